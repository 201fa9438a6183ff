"""A run's whole pipeline in this thread: query, render, deliver, each stage handing the next
what it read and made (`pipeline.carried`). The run's message (`jobs.actors.query_stage`)
runs it, and the embedded mode (no broker), `herald run` and the tests run it directly."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from pipeline.carried import Carried
from pipeline.deliver import deliver_run
from pipeline.query import DELIVER, RENDER, query_run
from pipeline.render import render_run


def run_stages(run_id: int, deliver: Callable[[int, Carried], object]) -> None:
    """Query, render and `deliver` (a pass, or every pass) the run, one stage after the other.
    A render's RenderError is raised (the run stays RUNNING: its retry renders again)."""
    with tempfile.TemporaryDirectory(prefix=f"herald-run-{run_id}-") as directory:
        carried = Carried(Path(directory))
        following = query_run(run_id, carried)
        if following == RENDER:
            following = DELIVER if render_run(run_id, carried) else None
        if following == DELIVER:
            deliver(run_id, carried)


def run_in_process(run_id: int) -> None:
    """The whole run here, waiting between delivery passes for retries."""
    run_stages(run_id, deliver_run)
