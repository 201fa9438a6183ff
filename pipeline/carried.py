"""What a run's stages hand each other when one message takes the run through all of them.

A run's message (`jobs.actors.query_stage`, `pipeline.in_process`) queries, renders and
delivers in one thread. The query stage hands on the rows it read and the result it stored
(or, for a run reusing another's render, the artifact rows it was given), the render stage
the documents it made (files under `directory`, the same bytes it stored), so the next stage
reads none of them back from the database. A stage that runs alone (a
retry's own message, a run taken over after a crash) gets no `Carried` and reads what it
needs from the database, as every stage can.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from models.reports import Report
from models.runs import Artifact, ReportRun
from models.schedules import Schedule
from models.tenancy import Tenant


@dataclass
class Carried:
    directory: Path                       # where the render stage writes, removed after the run
    rows: tuple[ReportRun, Schedule, Report, Tenant] | None = None
    kinds: set[str] = field(default_factory=set)  # the artifacts the run had when it was taken
    stored: dict[str, Any] | None = None  # the query's result, as stored (params, sections, share)
    leads: int | None = None              # the render share this run leads, known to be its own
    documents: dict[str, tuple[Artifact, Path]] = field(default_factory=dict)  # format: stored, file
    shared: dict[str, Artifact] | None = None  # kind: the artifacts a run reusing a render was given
    planned: bool = False                 # a deliver pass of this thread planned the run
