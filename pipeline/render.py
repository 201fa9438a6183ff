"""The render step: each of the schedule's formats made into a document, kept as an artifact.

`render_run` (the `render_stage` actor calls it) reads the rows the query step stored, renders
PDF, CSV and XLSX as the schedule asks, and keeps each for the deliver step (and for History's
downloads until the retention period ends).
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from models.artifacts import QUERY_RESULT, read_content, run_artifact, store_artifact_file
from models.base import Format
from models.db import session_scope, utcnow
from models.definition import ReportDefinition
from models.errors import QueryError, RenderError
from models.periods import from_params
from models.runs import RunStatus, ShareState
from models.tenancy import Tenant
from pipeline import metrics, sharing
from pipeline.carried import Carried
from pipeline.leases import holding_lease, lease_length, note_error, still_running
from pipeline.query import DELIVER, end_by_id, follow_share, load_run, with_period
from renderers import RENDERERS, RenderJob

log = logging.getLogger("herald.pipeline")


def render_run(run_id: int, carried: Carried | None = None) -> bool:
    """Render each of the schedule's formats into an artifact; True when delivery should follow.
    With `carried` (the query stage ran in this thread), nothing it read is read again, and
    the documents are handed on to the deliver stage."""
    handed = carried is not None and carried.stored is not None
    if not handed and not still_running(run_id):
        return False
    with holding_lease(run_id, lease_length()):
        if handed:
            (run, schedule, report, tenant), stored = carried.rows, carried.stored
        else:
            with session_scope() as session:
                run, schedule, report, tenant = load_run(session, run_id)
                stored = json.loads(read_content(session, run_artifact(session, run_id, QUERY_RESULT)))
        share = stored.get("share")
        if share is not None and not (handed and carried.leads == share) \
                and not sharing.lead(share, run_id, utcnow()):
            # This run's earlier attempt failed and another run took the share over meanwhile.
            following = follow_share(run_id, share, carried=carried)
            if following is not None:
                return following == DELIVER
        params = with_period(stored["params"], from_params(stored["params"], ZoneInfo(schedule.timezone)))
        job = render_job(report.parsed(), params, tenant, schedule.timezone,
                         stored["sections"], run.scheduled_for, utcnow())
        try:
            with contextlib.ExitStack() as stack:
                directory = (carried.directory if carried is not None else
                             Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=f"herald-run-{run_id}-"))))
                _render_formats(run_id, job, [Format(f) for f in schedule.formats], directory, carried)
        except QueryError as exc:  # the CSV query: permanent
            if share is not None:
                sharing.finish(run_id, ShareState.FAILED, str(exc))
            end_by_id(run_id, RunStatus.FAILED, str(exc))
            return False
        except RenderError as exc:  # the browser: transient, retried by Dramatiq, bounded by attempts
            note_error(run_id, f"render: {exc}")
            if share is not None:
                sharing.finish(run_id, ShareState.RETRY, f"render: {exc}")
            raise
    if share is not None:
        sharing.finish(run_id, ShareState.READY)
    return True


def _render_formats(run_id: int, job: RenderJob, formats: list[Format], directory: Path,
                    carried: Carried | None) -> None:
    """Each document rendered into `directory` and stored (replacing one an earlier attempt
    stored, unless the query stage saw there is none)."""
    for fmt in formats:
        with metrics.RENDER_SECONDS.labels(fmt.value).time():
            document = RENDERERS[fmt](job, directory)
        with session_scope() as session:
            artifact = store_artifact_file(session, document.path, run_id=run_id, kind=fmt.value,
                                           filename=document.filename, media_type=document.media_type,
                                           now=utcnow(), rows=document.rows,
                                           replace=carried is None or fmt.value in carried.kinds)
        metrics.ARTIFACT_BYTES.labels(fmt.value).inc(document.size)
        log.info("run %s: %s rendered (%d bytes)", run_id, document.filename, document.size)
        if carried is not None:
            carried.documents[fmt.value] = (artifact, document.path)


def render_job(definition: ReportDefinition, params: dict[str, Any], tenant: Tenant, timezone: str,
               results: list[dict[str, Any]], slot: datetime, now: datetime,
               compress: bool = True) -> RenderJob:
    """What the renderers get: times in `timezone`, files named for the slot's local date."""
    zone = ZoneInfo(timezone)
    return RenderJob(definition=definition, results=results, params=params, tenant=tenant.name,
                     datasource_url=tenant.datasource_url or "", generated_at=now.astimezone(zone),
                     period=slot.astimezone(zone).date(), compress=compress,
                     tenant_key=f"tenant-{tenant.id}", timezone=tenant.timezone)
