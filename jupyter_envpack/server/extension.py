"""``EnvpackExtension``: the ExtensionApp that jupyter_server loads (auto-enabled on install)."""

from __future__ import annotations

from jupyter_server.extension.application import ExtensionApp

from ..config import CONFIG_FILE_NAMES, EnvPack
from ..image.engine import use_engine
from .handlers import make_handlers
from .paths import ContentsPaths
from .service import EnvpackService


class EnvpackExtension(ExtensionApp):
    """Serves ``/envpack/...``; configured through ``c.EnvPack`` (``jupyter_envpack.config``).

    Extra operation kinds come from ``c.EnvPack.operation_kinds`` (import strings), or from
    ``web_app.settings["envpack_service"].manager.register_kind(...)`` (tests).
    """

    name = "jupyter_envpack"
    load_other_extensions = True
    classes = [EnvPack]  # noqa: RUF012 - traitlets' own class attribute convention

    service: EnvpackService | None = None

    def _config_file_name_default(self) -> str:
        # jupyter_envpack_config.{py,json}, as the CLI and magics read (config.CONFIG_FILE_NAMES);
        # ExtensionApp's default would be jupyter_jupyter_envpack_config.
        return CONFIG_FILE_NAMES[-1]

    def initialize_settings(self) -> None:
        """Create the service (store, manager) and start reconciling leftovers."""
        assert self.serverapp is not None
        config = EnvPack(parent=self)
        use_engine(config.engine_url)
        contents = self.serverapp.contents_manager
        root = getattr(contents, "root_dir", None) or self.serverapp.root_dir
        paths = ContentsPaths(
            str(root),
            allow_hidden=bool(getattr(contents, "allow_hidden", False)),
            max_size=config.max_notebook_size,
        )
        self.service = EnvpackService(config, paths)
        self.settings["envpack_service"] = self.service
        self.service.start()
        self.log.info(
            "envpack: operations database %s%s",
            config.database_path,
            f" (degraded: {self.service.degraded})" if self.service.degraded else "",
        )

    def initialize_handlers(self) -> None:
        """Add the REST handlers."""
        self.handlers.extend(make_handlers())

    async def stop_extension(self) -> None:
        """Detach from running operations (followed again after the restart)."""
        if self.service is not None:
            self.service.stop()
