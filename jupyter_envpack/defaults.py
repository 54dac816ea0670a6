"""Built-in defaults of the time and resource limits and the image layout, written once.

``c.EnvPack`` traits (:mod:`jupyter_envpack.config`), the core's options dataclasses
(``BuildOptions``, ``RunOptions``, ``SubmitOptions``, ``JobSpec``) and the CLI's help text all read
these. Precedence everywhere: a command-line flag or request option, else ``c.EnvPack``, else these.
(The in-image runner script keeps its own copy of :data:`CELL_TIMEOUT`: it runs without the package.)
"""

from __future__ import annotations

BUILD_DEADLINE = 3600.0
"""Overall deadline of one build, in seconds."""

IDLE_TIMEOUT = 600.0
"""A build step silent for this many seconds fails."""

RUN_DEADLINE = 3600.0
"""Overall deadline of one notebook run (also of a cluster job), in seconds."""

CELL_TIMEOUT = 600.0
"""Timeout of one cell during a run, in seconds."""

RUN_MEMORY = "2g"
"""Memory limit of a rerun container (no swap on top; RELIABILITY L4)."""

RUN_CPUS = 2.0
"""CPU quota of a rerun container, in cores."""

RUN_PIDS = 512
"""Most processes and threads at once in a rerun container."""

LAYOUTS = ("single", "shared")
"""Environment layouts of an image, the default first (``c.EnvPack.layers``, ``--layers``)."""
