"""``EnvpackService``: what the handlers share — config, paths, store, manager, thread pool.

Kept free of tornado so it can be tested directly. A database that cannot be opened does not
stop Jupyter: the service starts *degraded* (``/envpack/status`` says why, operation routes 503,
snapshot and Dockerfile still work) — RELIABILITY J2.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..config import EnvPack, import_string
from ..errors import EnvpackError
from ..operations import Kind, OperationManager, OperationStore, StoreUnavailableError
from .kinds import builtin_kinds, docker_client, snapshot_options
from .paths import ContentsPaths
from .schema import kernel_name

log = logging.getLogger(__name__)


class EnvpackService:
    """The server-side state of jupyter-envpack.

    Parameters
    ----------
    config
        The ``EnvPack`` configuration.
    paths
        The contents root's path policy.
    kinds
        Extra kinds to register (tests register fakes here); ``config.operation_kinds`` are added too.
    """

    def __init__(
        self,
        config: EnvPack,
        paths: ContentsPaths,
        kinds: list[Kind] | None = None,
    ) -> None:
        self.config, self.paths = config, paths
        self.pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="envpack-http")
        self.manager: OperationManager | None = None
        self.degraded: str | None = None
        try:
            store = OperationStore(config.database_path)
        except StoreUnavailableError as exc:
            log.error("envpack: operations are unavailable: %s", exc.message)
            self.degraded = exc.message
            return
        self.manager = OperationManager(store, config, paths)
        for kind in [*builtin_kinds(paths.output), *self._configured_kinds(), *(kinds or [])]:
            self.manager.register_kind(kind)

    def _configured_kinds(self) -> list[Kind]:
        found = []
        for name, target in self.config.operation_kinds.items():
            try:
                kind = import_string(target)
            except (ImportError, AttributeError) as exc:
                log.info("envpack: operation kind %r not available (%s)", name, exc)
                continue
            found.append(
                kind
                if kind.name == name
                else Kind(name, kind.run, kind.resume, kind.validate, kind.dedupe)
            )
        return found

    def start(self) -> None:
        """Start the workers and reconcile rows a previous server left running."""
        if self.manager is None:
            return
        try:
            self.manager.start()
        except StoreUnavailableError as exc:
            log.error("envpack: could not reconcile operations: %s", exc.message)

    def stop(self) -> None:
        """Detach from running work (it is followed again on the next start) and close."""
        if self.manager is not None:
            self.manager.shutdown()
            self.manager.store.close()
        self.pool.shutdown(wait=False, cancel_futures=True)

    def require_manager(self) -> OperationManager:
        """The manager, or ``StoreUnavailableError`` (503) when degraded."""
        if self.manager is None:
            raise StoreUnavailableError(
                f"operations are unavailable: {self.degraded}",
                hint="see the server log; fix or remove the database",
            )
        return self.manager

    # ----- pure-ish requests (run in the thread pool by the handlers) ------------------------
    def snapshot_json(
        self, api_path: str, kernel: str | None, reconstruct: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Return the snapshot JSON of ``api_path`` (``notebook`` as the API path);
        ``reconstruct`` (``{"reconstruct": true, "as_of"?}``) reconstructs it instead."""
        from ..snapshot import take_snapshot

        notebook = self.paths.notebook(api_path)
        options = snapshot_options(self.config, reconstruct or {})
        spec = take_snapshot(str(notebook), kernel=self._kernel(kernel), options=options)
        data: dict[str, Any] = spec.to_json()
        data["notebook"] = api_path
        return data

    def dockerfile(
        self,
        api_path: str,
        kernel: str | None,
        base_image: str | None,
        reconstruct: dict[str, Any] | None = None,
    ) -> str:
        """Return the Dockerfile the build of ``api_path`` would use."""
        from ..image import render_dockerfile
        from ..snapshot import take_snapshot

        notebook = self.paths.notebook(api_path)
        options = snapshot_options(self.config, {"base_image": base_image, **(reconstruct or {})})
        spec = take_snapshot(str(notebook), kernel=self._kernel(kernel), options=options)
        options = self.config.build_options(base_image=self._image(base_image))
        return str(render_dockerfile(spec, options))

    def _kernel(self, kernel: str | None) -> str | None:
        return kernel_name(self.config, kernel)

    @staticmethod
    def _image(ref: str | None) -> str | None:
        from ..image.refs import validate_reference

        return validate_reference(ref, "base image") if ref else None

    def engine_status(self) -> dict[str, Any]:
        """Ask the Docker engine whether it answers, its version and its swarm state."""
        try:
            client = docker_client()
        except EnvpackError as exc:
            return {"reachable": False, "error": exc.to_json()}
        try:
            version = client.version()
            swarm = (client.info().get("Swarm") or {}).get("LocalNodeState") or "inactive"
        except Exception as exc:  # any engine fault means "not reachable" here
            return {
                "reachable": False,
                "error": {
                    "error": "EngineError",
                    "reason": "engine-unavailable",
                    "message": f"engine error ({type(exc).__name__})",
                    "hint": None,
                },
            }
        finally:
            client.close()
        return {
            "reachable": True,
            "version": version.get("Version"),
            "api_version": version.get("ApiVersion"),
            "swarm": swarm,
            "error": None,
        }

    def status(self) -> dict[str, Any]:
        """Return the server-side part of ``GET /envpack/status``."""
        from .. import __version__

        out: dict[str, Any] = {
            "version": __version__,
            "degraded": self.degraded,
            "kinds": [],
            "operations": None,
        }
        if self.manager is not None:
            out["kinds"] = self.manager.kinds
            try:
                out["operations"] = self.manager.stats()
            except StoreUnavailableError as exc:
                out["degraded"] = exc.message
        return out
