"""The whole pipeline for one run, synchronously in this process: the embedded mode (no
broker), `herald run`, and the tests. The actors run the same steps one message each."""

from __future__ import annotations

from pipeline.deliver import deliver_run
from pipeline.query import DELIVER, RENDER, query_run
from pipeline.render import render_run


def run_in_process(run_id: int) -> None:
    """Query, render and deliver the run here, one step after the other."""
    following = query_run(run_id)
    if following == DELIVER or (following == RENDER and render_run(run_id)):
        deliver_run(run_id)
