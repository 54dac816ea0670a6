"""The one exception tree of jupyter-envpack.

Every error a user can meet carries a message that names the problem and, where there is one,
a ``hint`` that says how to fix it. Surfaces map these classes to their own idiom once: the CLI
to exit codes, the REST API to HTTP status codes, the magics to short cell errors.

::

    EnvpackError
    ├── InputError                 bad user input (names, references, parameters, options)  → 400
    │   └── NotFoundError          a path that does not exist or may not be read            → 404
    ├── ForbiddenError             the user may not have this done on their behalf           → 403
    ├── NotebookError              not a readable notebook                                   → 422
    │   ├── NotebookTooLargeError  larger than the configured limit                          → 413
    │   └── UnsupportedLanguageError  not a Python notebook                                  → 422
    ├── ProbeError                 the kernel's interpreter could not be asked               → 422
    ├── EngineError                Docker engine unreachable or misbehaving                  → 503
    ├── BuildError                 a build step failed (step + last log lines)               → 422
    ├── RunError                   the notebook could not be executed in the image           → 422
    │   └── ResultTooLargeError    a container's result/log/archive passed a read cap        → 413
    ├── RegistryError              push failed (sanitised message)                           → 502
    ├── ClusterError               a cluster backend refused or lost a job                   → 502
    ├── ConflictError              an operation is in a state that forbids the request       → 409
    └── CancelledError             the user cancelled a long operation                       → 409
"""

from __future__ import annotations


class EnvpackError(Exception):
    """Base class of every error jupyter-envpack raises on purpose.

    Parameters
    ----------
    message
        What went wrong, naming the thing at fault.
    hint
        How the user can fix it (optional).
    """

    status = 500
    reason = "error"

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message

    def to_json(self) -> dict[str, str | None]:
        """Return the wire form used by the REST API and ``--json`` output."""
        return {
            "error": type(self).__name__,
            "reason": self.reason,
            "message": self.message,
            "hint": self.hint,
        }


class InputError(EnvpackError):
    """A value given by the user is invalid (name, image reference, parameter, option)."""

    status = 400
    reason = "invalid-input"


class NotFoundError(InputError):
    """A path does not exist, or lies where it may not be read."""

    status = 404
    reason = "not-found"


class ForbiddenError(EnvpackError):
    """The user may not have this done on their behalf (e.g. start a process)."""

    status = 403
    reason = "forbidden"


class NotebookError(EnvpackError):
    """The file is not a notebook jupyter-envpack can read."""

    status = 422
    reason = "bad-notebook"


class NotebookTooLargeError(NotebookError):
    """The notebook is larger than the configured size limit."""

    status = 413
    reason = "too-large"


class UnsupportedLanguageError(NotebookError):
    """The notebook's kernel is not a Python kernel."""

    reason = "unsupported-language"


class ProbeError(EnvpackError):
    """The kernel's interpreter could not be asked what is installed."""

    status = 422
    reason = "probe-failed"


class EngineError(EnvpackError):
    """The Docker engine is not reachable or answered with an error."""

    status = 503
    reason = "engine-unavailable"


class NoGpuRuntimeError(EngineError):
    """GPUs were asked for, but the engine has no GPU runtime (no NVIDIA Container Toolkit)."""

    status = 422
    reason = "no-gpu-runtime"


class BuildError(EnvpackError):
    """A build failed; ``step`` and ``log_tail`` say where."""

    status = 422
    reason = "build-failed"

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        step: str | None = None,
        log_tail: list[str] | None = None,
        reason: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.step = step
        self.log_tail = log_tail or []
        if reason:
            self.reason = reason


class RunError(EnvpackError):
    """The notebook could not be executed in its image (timeout, kernel death, OOM...)."""

    status = 422
    reason = "run-failed"

    def __init__(self, message: str, *, hint: str | None = None, reason: str | None = None) -> None:
        super().__init__(message, hint=hint)
        if reason:
            self.reason = reason


class ResultTooLargeError(RunError):
    """What a container handed back (archive, log, compressed result) passed envpack's cap."""

    status = 413
    reason = "too-large"


class RegistryError(EnvpackError):
    """Pushing to (or reading from) a registry failed. The message is sanitised."""

    status = 502
    reason = "registry-failed"


class ClusterError(EnvpackError):
    """A cluster backend refused, failed or lost a job."""

    status = 502
    reason = "cluster-failed"


class ConflictError(EnvpackError):
    """The request conflicts with the current state (e.g. cancelling a finished operation)."""

    status = 409
    reason = "conflict"


class CancelledError(EnvpackError):
    """A long operation was cancelled by the user."""

    status = 409
    reason = "cancelled"
