"""jupyter-envpack: turn a notebook into a reproducible, runnable container.

This module only holds the extension entry points (server, labextension, IPython); the library
lives in the subpackages (``snapshot``, ``image``, ``execute``, ``pipeline``...).
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing's: importing the package stays cheap for the CLI
if TYPE_CHECKING:
    from typing import Any

__all__ = ["__version__", "load_ipython_extension"]

try:
    from ._version import __version__
except ImportError:  # a source checkout that was never built: no generated _version.py
    __version__ = "0.0.0+unknown"


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    """Tell jupyter_server where the extension app is."""
    from .server.extension import EnvpackExtension

    return [{"module": "jupyter_envpack", "app": EnvpackExtension}]


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    """Tell JupyterLab where the prebuilt frontend is."""
    return [{"src": "labextension", "dest": "jupyter-envpack"}]


def load_ipython_extension(ip: Any) -> None:
    """``%load_ext jupyter_envpack``: register the ``%envpack`` magics."""
    from .magics import load_ipython_extension as load

    load(ip)
