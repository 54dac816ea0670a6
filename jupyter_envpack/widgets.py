"""What the ``%envpack`` magics show: live progress (ipywidgets or plain text) and result views.

Progress is a :data:`~jupyter_envpack.events.Reporter`. :func:`run_with_progress` runs the core's
long call in a worker thread and feeds its events to the display **from the kernel's main thread**
(so widget messages and prints land in the running cell), and turns Ctrl-C / "interrupt kernel"
into a :class:`~jupyter_envpack.events.CancelToken` cancel so the core cleans up its containers.

Widgets are used when a widget frontend is likely (a Jupyter kernel started by a Jupyter server or
VS Code, with ipywidgets importable); headless execution (nbclient, papermill, terminal IPython)
gets plain text. ``ENVPACK_MAGICS_DISPLAY=widgets|text`` or ``--widgets``/``--plain`` decide
explicitly. Every text shown is escaped or set as plain text (logs may contain HTML, RELIABILITY A7).
"""

from __future__ import annotations

import html
import os
import queue
import sys
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from .events import CancelToken, ProgressEvent, Reporter

if TYPE_CHECKING:
    from .snapshot.spec import EnvSpec, PinnedPackage

T = TypeVar("T")
DISPLAY_ENV = "ENVPACK_MAGICS_DISPLAY"
LOG_LINES = 400  # log lines kept in the widget (the core keeps the full log)
TAIL_LINES = 15  # log lines printed in text mode when a step fails
REFRESH = 0.25  # seconds between two log refreshes of the widget


class Progress(Protocol):
    """A reporter with an end: ``progress(event)`` for each event, then ``close(ok)``."""

    def __call__(self, event: ProgressEvent) -> None: ...

    def close(self, ok: bool) -> None: ...


def widgets_wanted(shell: Any, mode: str | None = None) -> bool:
    """Decide between widgets and text: ``mode`` (``widgets``/``text``/``auto``) or auto-detect.

    Auto means: ipywidgets importable, a kernel with comms (not terminal IPython), and a
    notebook frontend known to render widgets (JupyterLab/Notebook set ``JPY_SESSION_NAME``,
    VS Code sets ``__vsc_ipynb_file__``). nbclient and papermill set neither.
    """
    mode = (mode or os.environ.get(DISPLAY_ENV) or "auto").lower()
    if mode in {"text", "plain"}:
        return False
    try:
        import ipywidgets  # noqa: F401 - only asking whether it is there
    except ImportError:
        return False
    if mode == "widgets":
        return True
    user_ns = getattr(shell, "user_ns", {}) or {}
    has_kernel = getattr(shell, "kernel", None) is not None
    return has_kernel and bool(
        os.environ.get("JPY_SESSION_NAME") or user_ns.get("__vsc_ipynb_file__")
    )


class TextProgress:
    """Plain-text progress: steps, warnings and coarse percentages; the log tail on failure."""

    def __init__(self, title: str, stream: Any = None) -> None:
        self.stream = stream or sys.stdout
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        self.last_pct: dict[str, int] = {}
        self._print(f"{title}…")

    def _print(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def __call__(self, event: ProgressEvent) -> None:
        if event.kind == "log":
            self.tail.append(event.message)
            return
        if event.kind == "progress" and event.progress is not None:
            pct = int(event.progress * 100) // 25 * 25
            if pct > self.last_pct.get(event.stage, -1):
                self.last_pct[event.stage] = pct
                self._print(f"  {event.stage}: {pct}%")
            return
        prefix = {"step": "▸ ", "warning": "warning: ", "info": "  "}.get(event.kind, "  ")
        self._print(f"{prefix}{event.stage}: {event.message}")

    def close(self, ok: bool) -> None:
        if not ok and self.tail:
            self._print("last log lines:\n" + "\n".join(f"  {line}" for line in self.tail))


class WidgetProgress:
    """ipywidgets progress: a bar, the current step, and a collapsible, live log."""

    def __init__(self, title: str) -> None:
        import ipywidgets as w
        from IPython.display import display

        self.lines: deque[str] = deque(maxlen=LOG_LINES)
        self.title = w.HTML(f"<b>{html.escape(title)}</b>")
        self.bar = w.FloatProgress(
            value=0.0, min=0.0, max=1.0, description="", layout=w.Layout(width="60%")
        )
        self.step = w.Label("starting…")
        self.log = w.Textarea(
            value="", disabled=True, layout=w.Layout(width="100%", height="240px")
        )
        self.accordion = w.Accordion(children=[self.log], selected_index=None)
        self.accordion.set_title(0, "Log")
        self.box = w.VBox([self.title, w.HBox([self.bar, self.step]), self.accordion])
        self._dirty = False
        self._flushed = 0.0
        display(self.box)  # type: ignore[no-untyped-call]

    def __call__(self, event: ProgressEvent) -> None:
        if event.progress is not None:
            self.bar.value = max(0.0, min(1.0, event.progress))
        if event.kind in {"step", "info", "warning"}:
            label = f"{event.stage}: {event.message}"
            self.step.value = label if len(label) < 120 else label[:119] + "…"
        if event.kind == "warning":
            self.bar.bar_style = "warning"
        if event.kind != "progress":
            self.lines.append(f"[{event.stage}] {event.message}")
            self._dirty = True
        if self._dirty and time.monotonic() - self._flushed > REFRESH:
            self._flush()

    def _flush(self) -> None:
        self.log.value = "\n".join(self.lines)  # a Textarea shows text, never HTML
        self._dirty = False
        self._flushed = time.monotonic()

    def close(self, ok: bool) -> None:
        self._flush()
        self.bar.bar_style = "success" if ok else "danger"
        if ok:
            self.bar.value = 1.0
        else:
            self.accordion.selected_index = 0  # open the log where the failure is


def make_progress(title: str, shell: Any = None, mode: str | None = None) -> Progress:
    """Return a :class:`WidgetProgress` or a :class:`TextProgress` (see :func:`widgets_wanted`)."""
    if widgets_wanted(shell, mode):
        return WidgetProgress(title)
    return TextProgress(title)


def run_with_progress(
    work: Callable[[Reporter, CancelToken], T], progress: Progress, poll: float = 0.1
) -> T:
    """Run ``work(reporter, cancel)`` in a worker thread, showing its events as they come.

    The first KeyboardInterrupt cancels the work and waits for it to stop cleanly; a second one
    stops waiting. The work's exception (e.g. an EnvpackError) is re-raised here.
    """
    events: queue.Queue[ProgressEvent] = queue.Queue()
    cancel = CancelToken()

    def drain() -> None:
        while True:
            try:
                progress(events.get_nowait())
            except queue.Empty:
                return

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="envpack-magic")
    future = pool.submit(work, events.put, cancel)
    try:
        while not future.done():
            try:
                progress(events.get(timeout=poll))
            except queue.Empty:
                pass
            except KeyboardInterrupt:
                if cancel.cancelled:
                    raise
                cancel.cancel()
                progress(
                    ProgressEvent(
                        "cancel", "cancelling… (interrupt again to stop waiting)", "warning"
                    )
                )
        drain()
    except BaseException:
        progress.close(False)
        raise
    finally:
        pool.shutdown(wait=False)
    progress.close(future.exception() is None)
    return future.result()


# ---------------------------------------------------------------- result views
def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _warnings_html(warnings: list[dict[str, Any]]) -> str:
    if not warnings:
        return ""
    items = "".join(
        f"<li><code>{_esc(w['code'])}</code>"
        + (f" (cell {_esc(w['cell'])})" if w.get("cell") is not None else "")
        + f": {_esc(w['message'])}"
        + (f"<br/><i>fix:</i> {_esc(w['hint'])}" if w.get("hint") else "")
        + "</li>"
        for w in warnings
    )
    return f"<details open><summary>{len(warnings)} warning(s)</summary><ul>{items}</ul></details>"


def _warnings_text(warnings: list[dict[str, Any]]) -> list[str]:
    lines = []
    for w in warnings:
        where = f" (cell {w['cell']})" if w.get("cell") is not None else ""
        lines.append(f"warning: {w['code']}{where}: {w['message']}")
        if w.get("hint"):
            lines.append(f"  fix: {w['hint']}")
    return lines


def _why(p: PinnedPackage) -> str:
    reasons = {"runner": "added to run the kernel", "pip-pin": "%pip pin (from the index)"}
    if p.reason in reasons:
        return reasons[p.reason]
    return "imports " + ", ".join(p.modules) if p.requested else "dependency"


class SnapshotView:
    """The pinned environment as an HTML table (``.spec`` is the EnvSpec)."""

    def __init__(self, spec: EnvSpec) -> None:
        self.spec = spec

    def _rows(self) -> list[tuple[str, str, str]]:
        return [(p.name, p.version, _why(p)) for p in self.spec.packages]

    def _repr_html_(self) -> str:
        s = self.spec
        rows = "".join(
            f"<tr><td>{_esc(n)}</td><td>{_esc(v)}</td><td>{_esc(why)}</td></tr>"
            for n, v, why in self._rows()
        )
        local = f"<p>local files: {_esc(', '.join(s.local_files))}</p>" if s.local_files else ""
        if s.data_files:
            local += f"<p>data files: {_esc(', '.join(d.path for d in s.data_files))}</p>"
        return (
            f"<div class='jp-Envpack-snapshot'><p><b>{_esc(s.notebook)}</b> — Python "
            f"{_esc(s.python_version)} — {len(s.packages)} pinned packages — hash "
            f"<code>{_esc(s.hash[:20])}</code></p><table><thead><tr><th>distribution</th>"
            f"<th>version</th><th>why</th></tr></thead><tbody>{rows}</tbody></table>{local}"
            f"{_warnings_html([w.to_json() for w in s.warnings])}</div>"
        )

    def __repr__(self) -> str:
        s = self.spec
        lines = [f"{s.notebook} — Python {s.python_version} — {len(s.packages)} pinned packages"]
        lines += [f"  {n}=={v}  ({why})" for n, v, why in self._rows()]
        if s.local_files:
            lines.append("local files: " + ", ".join(s.local_files))
        if s.data_files:
            lines.append("data files: " + ", ".join(d.path for d in s.data_files))
        lines += _warnings_text([w.to_json() for w in s.warnings])
        lines.append(f"hash {s.hash[:20]}")
        return "\n".join(lines)


class TextView:
    """A block of text (a Dockerfile) shown verbatim; ``.text`` holds it."""

    def __init__(self, text: str) -> None:
        self.text = text

    def _repr_html_(self) -> str:
        return f"<pre>{_esc(self.text)}</pre>"

    def __repr__(self) -> str:
        return self.text


class FieldsView:
    """A short result: a headline, ``key: value`` fields and warnings (``.data`` holds them)."""

    def __init__(
        self,
        headline: str,
        fields: dict[str, Any],
        warnings: list[dict[str, Any]] | None = None,
        data: Any = None,
    ) -> None:
        self.headline = headline
        self.fields = {k: v for k, v in fields.items() if v is not None}
        self.warnings = warnings or []
        self.data = data

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><th style='text-align:left'>{_esc(k)}</th><td>{self._cell(v)}</td></tr>"
            for k, v in self.fields.items()
        )
        return (
            f"<div class='jp-Envpack-result'><p><b>{_esc(self.headline)}</b></p>"
            f"<table>{rows}</table>{_warnings_html(self.warnings)}</div>"
        )

    @staticmethod
    def _cell(value: Any) -> str:
        text = str(value)
        if text.startswith("https://") and "\n" not in text:
            return f"<a href='{_esc(text)}' target='_blank' rel='noopener'>{_esc(text)}</a>"
        if "\n" in text:
            return f"<pre>{_esc(text)}</pre>"
        return _esc(text)

    def __repr__(self) -> str:
        lines = [self.headline]
        for key, value in self.fields.items():
            text = str(value)
            lines.append(f"{key}: " + (text.replace("\n", "\n  ") if "\n" in text else text))
        return "\n".join(lines + _warnings_text(self.warnings))


class TableView:
    """Rows under a headline (job lists); ``.rows`` holds them."""

    def __init__(self, headline: str, columns: list[str], rows: list[list[Any]]) -> None:
        self.headline = headline
        self.columns = columns
        self.rows = rows

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{_esc(c)}</th>" for c in self.columns)
        body = "".join(
            "<tr>" + "".join(f"<td>{_esc(v)}</td>" for v in row) + "</tr>" for row in self.rows
        )
        return (
            f"<div class='jp-Envpack-result'><p><b>{_esc(self.headline)}</b></p><table>"
            f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"
        )

    def __repr__(self) -> str:
        lines = [self.headline, "  ".join(self.columns)]
        lines += ["  ".join(str(v) for v in row) for row in self.rows]
        return "\n".join(lines)
