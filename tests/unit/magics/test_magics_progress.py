"""Progress displays of the magics: widgets or text, live events from a worker thread, cancel."""

from __future__ import annotations

import threading

import pytest

from jupyter_envpack.errors import BuildError
from jupyter_envpack.events import ProgressEvent
from jupyter_envpack.widgets import (
    FieldsView,
    TextProgress,
    WidgetProgress,
    run_with_progress,
    widgets_wanted,
)


class Recorder:
    """A progress display that records what it got and on which thread."""

    def __init__(self, interrupt_on: int | None = None) -> None:
        self.events: list[ProgressEvent] = []
        self.threads: set[str] = set()
        self.closed: bool | None = None
        self.interrupt_on = interrupt_on

    def __call__(self, event: ProgressEvent) -> None:
        self.events.append(event)
        self.threads.add(threading.current_thread().name)
        if self.interrupt_on is not None and len(self.events) == self.interrupt_on:
            raise KeyboardInterrupt

    def close(self, ok: bool) -> None:
        self.closed = ok


class FakeShell:
    def __init__(self, kernel: object = None, user_ns: dict | None = None) -> None:
        self.kernel = kernel
        self.user_ns = user_ns or {}


def test_events_reach_the_display_on_the_main_thread_and_the_result_comes_back():
    rec = Recorder()

    def work(reporter, cancel):
        for i in range(5):
            reporter(ProgressEvent("build", f"step {i}", "progress", i / 4))
        return "image:tag"

    assert run_with_progress(work, rec) == "image:tag"
    assert [e.message for e in rec.events] == [f"step {i}" for i in range(5)]
    assert rec.threads == {threading.main_thread().name}
    assert rec.closed is True


def test_errors_of_the_work_are_raised_and_the_display_closed_as_failed():
    rec = Recorder()

    def work(reporter, cancel):
        reporter(ProgressEvent("build", "RUN pip install", "step"))
        raise BuildError("build failed at step 3", hint="read the log")

    with pytest.raises(BuildError):
        run_with_progress(work, rec)
    assert rec.closed is False and rec.events[0].message == "RUN pip install"


def test_interrupt_cancels_the_work_which_stops_cleanly():
    rec = Recorder(interrupt_on=1)
    seen = threading.Event()

    def work(reporter, cancel):
        reporter(ProgressEvent("run", "cell 1/3", "progress", 0.3))
        stopped = cancel.wait(10)
        seen.set()
        return "cancelled" if stopped else "finished"

    assert run_with_progress(work, rec) == "cancelled"
    assert seen.is_set()
    assert any(e.kind == "warning" and "cancelling" in e.message for e in rec.events)


def test_text_progress_prints_steps_coarse_percentages_and_the_tail_on_failure(capsys):
    progress = TextProgress("envpack build nb.ipynb")
    progress(ProgressEvent("build", "FROM base", "step", 0.0))
    for i in range(101):
        progress(ProgressEvent("build", f"line {i}", "log"))
        progress(ProgressEvent("build", "", "progress", i / 100))
    progress(ProgressEvent("snapshot", "editable-install: x", "warning"))
    progress.close(False)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "envpack build nb.ipynb…"
    assert "▸ build: FROM base" in out
    assert [line for line in out if line.endswith("%")] == [
        "  build: 0%",
        "  build: 25%",
        "  build: 50%",
        "  build: 75%",
        "  build: 100%",
    ]
    assert "warning: snapshot: editable-install: x" in out
    assert out[-1] == "  line 100" and "  line 85" not in out


def test_widget_progress_updates_bar_step_and_a_text_log():
    progress = WidgetProgress("envpack run <nb>")
    progress(ProgressEvent("run", "cell 2/4", "progress", 0.5))
    progress(ProgressEvent("run", "<script>alert(1)</script>", "log"))
    progress(ProgressEvent("run", "starting kernel", "step"))
    progress.close(True)
    assert progress.bar.value == 1.0 and progress.bar.bar_style == "success"
    assert progress.step.value == "run: starting kernel"
    assert "[run] <script>alert(1)</script>" in progress.log.value  # a Textarea: text, not HTML
    assert "&lt;nb&gt;" in progress.title.value
    failed = WidgetProgress("x")
    failed.close(False)
    assert failed.bar.bar_style == "danger" and failed.accordion.selected_index == 0


def test_widgets_only_where_a_widget_frontend_is_likely(monkeypatch):
    monkeypatch.delenv("ENVPACK_MAGICS_DISPLAY", raising=False)
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    kernel = object()
    assert not widgets_wanted(FakeShell())  # terminal IPython
    assert not widgets_wanted(FakeShell(kernel))  # nbclient/papermill
    assert widgets_wanted(FakeShell(kernel, {"__vsc_ipynb_file__": "/a.ipynb"}))  # VS Code
    monkeypatch.setenv("JPY_SESSION_NAME", "/work/a.ipynb")
    assert widgets_wanted(FakeShell(kernel))  # JupyterLab
    assert not widgets_wanted(FakeShell(kernel), "text")
    monkeypatch.setenv("ENVPACK_MAGICS_DISPLAY", "text")
    assert not widgets_wanted(FakeShell(kernel))
    assert widgets_wanted(FakeShell(), "widgets")


@pytest.mark.reliability("A7")
def test_result_views_escape_everything():
    view = FieldsView(
        "<b>x</b>",
        {
            "link": "https://mybinder.org/v2/gh/a/b/main?x='y'",
            "log": "<img src=x onerror=alert(1)>\nline 2",
        },
        [{"code": "c", "message": "<script>", "hint": "<i>"}],
    )
    html = view._repr_html_()
    assert "<script>" not in html and "<img" not in html and "<b>x" not in html
    assert "href='https://mybinder.org/v2/gh/a/b/main?x=&#x27;y&#x27;'" in html
    assert "log: <img src=x onerror=alert(1)>\n  line 2" in repr(view)
