"""Render once, deliver to many: runs due in the same minute that would make the same
documents share one query and one render.

Two runs make the same documents when these are the same (`share_key`): the tenant, the
report's definition, the parameters with the period, the effective `send_if`, the schedule's
timezone and formats, the tenant's name and timezone (printed and used for times), the
renderer's settings, and the minute of the slot. The key is a row of `render_share`, unique
in the database, so the share holds across worker processes; the tenant is in the key and in
the row, so it never crosses tenants.

The first run to insert the key leads: it queries and renders as any run does, and says how
it ended (`finish`). The others wait for that outcome (`wait`) and then each still ends as
its own run, with its own deliveries and history:
- ready: the run's artifacts name the leader's bytes (`reuse`), and it goes to delivery;
- skipped (send_if not met) or failed (a query error): the run ends so, with the same reason;
- retry (the leader's attempt failed and will be retried): the run's attempt fails with the
  same reason and is retried as any run's, and whoever comes first then leads.
A leader whose worker died (its run's lease ran out) is replaced by the first waiter that
notices (`lead`): it renders again; nothing was sent from the dead leader's render.

`HERALD_SHARE_RENDERS=false` turns sharing off: every run renders its own documents.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from datetime import datetime, timedelta
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlmodel import Session

from models.db import insert_ignoring_conflicts, session_scope, utcnow
from models.reports import Report
from models.runs import Artifact, RenderShare, ReportRun, RunStatus, ShareState
from models.schedules import Schedule
from models.settings import Settings
from models.tenancy import Tenant
from pipeline import metrics

log = logging.getLogger("herald.sharing")
SHARES, ARTIFACTS, RUNS = RenderShare.__table__, Artifact.__table__, ReportRun.__table__
POLL_S = 0.1                      # how often a waiting run looks at its share
MAX_WAIT = timedelta(minutes=10)  # the render stage's time limit: a leader never takes longer
KEPT = timedelta(days=1)          # a share is read within its minute; kept a day for inspection


class SharedRenderFailed(Exception):
    """The render this run waited for failed; the run is retried as its leader's is."""


class Outcome(NamedTuple):
    """What a waiting run learned: it leads now, or the share's state, reason and leader."""

    leading: bool
    state: ShareState | None = None
    error: str | None = None
    leader_run_id: int | None = None
    given: dict[str, Artifact] | None = None  # ready when joined: the artifacts `reuse` gave the run


def share_key(run: ReportRun, schedule: Schedule, report: Report, tenant: Tenant,
              params: dict[str, Any], send_if: str, settings: Settings) -> str:
    """What the run's documents depend on, as one digest (see the module's docstring)."""
    parts = {
        "tenant": [tenant.id, tenant.name, tenant.timezone],
        "report": [report.id, report.definition],
        "params": params,
        "send_if": send_if,
        "schedule": [schedule.timezone, sorted(schedule.formats)],
        "renderer": [settings.render_pdf_stub, settings.pdf_table_max_rows, settings.csv_max_bytes,
                     settings.csv_neutralise_formulas],
        "minute": run.scheduled_for.replace(second=0, microsecond=0).isoformat(),
    }
    canonical = json.dumps(parts, sort_keys=True, default=_plain, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _plain(value: Any) -> str:
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


DONE = frozenset({ShareState.READY, ShareState.SKIPPED, ShareState.FAILED})


def join(run_id: int, tenant_id: int, key: str, replace: bool = True) -> tuple[int, Outcome]:
    """The share of `key` for the run: its id, and whether this run leads it, or the outcome
    it already has (a state) or neither (the run must `wait`). The first run to insert the
    key leads; a later one leads only when `lead` lets it take the share over. A share already
    ready gives the run its documents in the same transaction (`reuse`, with `replace`)."""
    with session_scope() as session:
        inserted = session.execute(
            insert_ignoring_conflicts(session, SHARES, "key")
            .values(key=key, tenant_id=tenant_id, leader_run_id=run_id,
                    state=ShareState.RENDERING.value, created_at=utcnow())
            .returning(SHARES.c.id)).scalar()
        if inserted is not None:
            return inserted, Outcome(True)
        share_id, state, error, leader = session.execute(
            sa.select(SHARES.c.id, SHARES.c.state, SHARES.c.error, SHARES.c.leader_run_id)
            .where(SHARES.c.key == key, SHARES.c.tenant_id == tenant_id)).one()
        given = _reuse(session, run_id, leader, replace) if state == ShareState.READY else None
    if given is not None:
        _reused(run_id, leader)
    if state in DONE:
        return share_id, Outcome(False, ShareState(state), error, leader, given)
    return share_id, Outcome(lead(share_id, run_id, utcnow()))


def lead(share_id: int, run_id: int, now: datetime, *, after_retry: bool = True) -> bool:
    """Make the run the share's leader, if the share is still to be rendered and nobody else
    is rendering it: it is this run's already, or its leader is no longer running under a
    live lease (its worker died), or (`after_retry`: a new attempt) the last attempt failed.
    One run wins."""
    leader_alive = sa.exists().where(RUNS.c.id == SHARES.c.leader_run_id,
                                     RUNS.c.status == RunStatus.RUNNING.value,
                                     RUNS.c.lease_expires_at >= now)
    open_to_me = sa.and_(SHARES.c.state == ShareState.RENDERING.value,
                         sa.or_(SHARES.c.leader_run_id == run_id, ~leader_alive))
    if after_retry:
        open_to_me = sa.or_(open_to_me, SHARES.c.state == ShareState.RETRY.value)
    with session_scope() as session:
        taken = session.execute(SHARES.update().where(SHARES.c.id == share_id, open_to_me)
                                .values(leader_run_id=run_id, state=ShareState.RENDERING.value,
                                        error=None)).rowcount
    if taken:
        log.debug("run %s leads render share %s", run_id, share_id)
    return bool(taken)


def wait(share_id: int, run_id: int) -> Outcome:
    """Wait for the share's outcome (a failed attempt's too: the waiter fails with it); or lead
    the share when its leader died."""
    deadline = time.monotonic() + MAX_WAIT.total_seconds()
    while True:
        with session_scope() as session:
            state, error, leader = session.execute(
                sa.select(SHARES.c.state, SHARES.c.error, SHARES.c.leader_run_id)
                .where(SHARES.c.id == share_id)).one()
        if state != ShareState.RENDERING:
            return Outcome(False, ShareState(state), error, leader)
        if leader != run_id and lead(share_id, run_id, utcnow(), after_retry=False):
            log.info("run %s renders share %s again: its leader, run %s, stopped", run_id,
                     share_id, leader)
            return Outcome(True)
        if time.monotonic() > deadline:
            raise SharedRenderFailed(f"the shared render of run {leader} took longer than "
                                     f"{MAX_WAIT}; retried")
        time.sleep(POLL_S)


def finish(run_id: int, state: ShareState, error: str | None = None) -> None:
    """The outcome of the share this run leads, if it leads one (else nothing)."""
    with session_scope() as session:
        session.execute(SHARES.update().where(SHARES.c.leader_run_id == run_id,
                                              SHARES.c.state == ShareState.RENDERING.value)
                        .values(state=state.value, error=error, finished_at=utcnow()))


def reuse(run_id: int, leader_run_id: int, replace: bool = True) -> dict[str, Artifact]:
    """Give the run the leader's artifacts (the query's result and each document): rows of its
    own, naming the leader's bytes; returned by kind. Anything the run had stored before goes
    (`replace=False`: the caller knows it has none)."""
    with session_scope() as session:
        given = _reuse(session, run_id, leader_run_id, replace)
    _reused(run_id, leader_run_id)
    return given


def _reuse(session: Session, run_id: int, leader_run_id: int, replace: bool) -> dict[str, Artifact]:
    if replace:
        session.execute(ARTIFACTS.delete().where(ARTIFACTS.c.run_id == run_id))
    copied = ("kind", "filename", "media_type", "size", "rows", "checksum", "created_at",
              "expires_at")
    given = session.execute(ARTIFACTS.insert().from_select(
        ["run_id", "content_id", *copied],
        sa.select(sa.literal(run_id), sa.func.coalesce(ARTIFACTS.c.content_id, ARTIFACTS.c.id),
                  *(ARTIFACTS.c[c] for c in copied))
        .where(ARTIFACTS.c.run_id == leader_run_id))
        .returning(*ARTIFACTS.c)).all()
    return {row.kind: Artifact(**row._mapping) for row in given}


def _reused(run_id: int, leader_run_id: int) -> None:
    """Counted and logged once the run's artifacts are committed."""
    metrics.SHARED_RENDERS.inc()
    log.info("run %s: documents shared from run %s", run_id, leader_run_id)


def purge_finished(session, now: datetime) -> int:
    """Forget shares older than a day; returns how many went."""
    return session.execute(SHARES.delete().where(SHARES.c.created_at < now - KEPT)).rowcount or 0
