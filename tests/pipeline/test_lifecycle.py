"""A run's and a delivery's status change in one place (`pipeline.lifecycle.move`), by the
table of allowed moves, each change announced once after its commit.

- every move named in herald's source is in the table (read from the source);
- every move a run and its deliveries actually make, along every path (a success, a partial
  send, a resend, a missed slot, a skipped send, a dead worker's run taken over, handed back,
  abandoned), is in the table (seen by a listener);
- a move outside the table is refused and writes nothing; reopening a failed delivery is a
  move like any other, recorded and announced.
(No status is written outside the lifecycle module: tests/test_layers.py.)
"""

from __future__ import annotations

import ast
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlmodel import select

from jobs.tick import tick
from models.db import session_scope, utcnow
from models.errors import InvalidTransition
from models.runs import Delivery, DeliveryStatus, ReportRun, RunStatus
from models.schedules import Schedule
from models.settings import get_settings
from pipeline import lifecycle
from pipeline.in_process import run_in_process
from pipeline.leases import release_run, take_run
from pipeline.lifecycle import DELIVERY_MOVES, RUN_MOVES, StateChange, allowed, move
from services import runs
from services.access import OPERATOR
from tests.delivery.conftest import fast_retries, mail_sink, make_schedule, videos_file  # noqa: F401
from tests.delivery.servers import MailSink
from tests.jobs.helpers import in_process, runs_of
from tests.seeding import manual_run

ROOT = Path(__file__).resolve().parents[2]
STATUS = {"RunStatus": RunStatus, "DeliveryStatus": DeliveryStatus}


def named_moves() -> list[tuple[str, str, str]]:
    """(where, old, new) of every `move(session, Old.X, New.Y, …)` whose statuses the source
    spells out (a move from a status read at run time is checked by `move` itself)."""
    found = []
    for path in sorted(ROOT.glob("*/**/*.py")):
        if path.parts[len(ROOT.parts)] in ("tests", "bench") or "migrations" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "move"):
                continue
            statuses = [STATUS[a.value.id][a.attr] for a in node.args[1:3]
                        if isinstance(a, ast.Attribute) and isinstance(a.value, ast.Name)
                        and a.value.id in STATUS]
            if len(statuses) == 2:
                found.append((f"{path.relative_to(ROOT)}:{node.lineno}", *statuses))
    return found


def test_every_move_named_in_the_source_is_allowed() -> None:
    moves = named_moves()
    assert [m for m in moves if not allowed(m[1], m[2])] == []
    # take, take over, hand back (a worker and the tick), miss, fail a channel, reopen
    assert {(m[1], m[2]) for m in moves} >= {
        (RunStatus.QUEUED, RunStatus.RUNNING), (RunStatus.RUNNING, RunStatus.RUNNING),
        (RunStatus.RUNNING, RunStatus.QUEUED), (RunStatus.QUEUED, RunStatus.MISSED),
        (DeliveryStatus.PENDING, DeliveryStatus.FAILED), (DeliveryStatus.FAILED, DeliveryStatus.PENDING)}


def test_the_table_reopens_failed_deliveries_and_never_leaves_a_final_run_but_to_resend() -> None:
    assert DeliveryStatus.PENDING in DELIVERY_MOVES[DeliveryStatus.FAILED]
    assert DeliveryStatus.SENT not in DELIVERY_MOVES
    for final in (RunStatus.SUCCESS, RunStatus.MISSED, RunStatus.SKIPPED):
        assert final not in RUN_MOVES
    assert RUN_MOVES[RunStatus.PARTIAL] == RUN_MOVES[RunStatus.FAILED] == {RunStatus.QUEUED}


def test_a_move_outside_the_table_is_refused_and_writes_nothing(
    db_url: str, videos_file: str  # noqa: F811
) -> None:
    run_id = manual_run(make_schedule(videos_file, emails=["a@acme.example"]))
    with session_scope() as session:
        with pytest.raises(InvalidTransition, match="^A run cannot move from queued to success.$"):
            move(session, RunStatus.QUEUED, RunStatus.SUCCESS, ReportRun.__table__.c.id == run_id)
        with pytest.raises(InvalidTransition, match="^A delivery cannot move from sent to failed.$"):
            move(session, DeliveryStatus.SENT, DeliveryStatus.FAILED)
    with session_scope() as session:
        assert session.get(ReportRun, run_id).status == RunStatus.QUEUED


@pytest.fixture
def seen(monkeypatch: pytest.MonkeyPatch) -> list[StateChange]:
    """Every committed change, as the metrics see them."""
    changes: list[StateChange] = []
    monkeypatch.setattr(lifecycle, "_listeners", [*lifecycle._listeners, changes.append])
    return changes


def test_every_move_along_every_path_is_in_the_table(
    db_url: str, videos_file: str, mail_sink: MailSink, seen: list[StateChange],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RENDER_PDF_STUB", "true")
    get_settings.cache_clear()
    bad = "gone@acme.example"
    mail_sink.refuse[bad] = (550, "5.1.1 <gone@acme.example>: mailbox unavailable")
    schedule_id = make_schedule(videos_file, emails=["anna@acme.example", bad])

    # A partial send, then its failed delivery resent
    with session_scope() as session:
        sent = runs.send_now(session, OPERATOR, schedule_id, now=utcnow(), dispatch=in_process)
        assert sent.status == "partial"
        del mail_sink.refuse[bad]
        assert runs.resend_failed(session, OPERATOR, sent.run_id, now=utcnow(),
                                  dispatch=in_process).status == "success"

    # A worker dies holding a run; another takes it over after the lease; a third hands it back
    taken = manual_run(schedule_id)
    assert take_run(taken, utcnow(), timedelta(seconds=1))
    assert take_run(taken, utcnow() + timedelta(seconds=5), timedelta(seconds=60))
    release_run(taken, utcnow(), "ConnectionError: the tenant's database went away")
    run_in_process(taken)

    # A run nobody finishes in its attempts is abandoned by the tick (FAILED)
    monkeypatch.setenv("HERALD_MAX_RUN_ATTEMPTS", "1")
    get_settings.cache_clear()
    abandoned = manual_run(schedule_id)
    assert take_run(abandoned, utcnow(), timedelta(seconds=1))
    tick(utcnow() + timedelta(minutes=5), lambda queued: None)

    # A slot claimed past its misfire grace is missed
    with session_scope() as session:
        session.execute(sa.update(Schedule).values(next_run_at=utcnow() - timedelta(hours=3),
                                                   misfire_grace_seconds=60))
    tick(utcnow(), lambda queued: None)

    moves = {(c.kind, c.old, c.new) for c in seen}
    runs_made = {(old, new) for kind, old, new in moves if kind == "run"}
    deliveries_made = {(old, new) for kind, old, new in moves if kind == "delivery"}
    assert {(old, new) for old, new in runs_made if old is not None} <= {
        (old.value, new.value) for old, targets in RUN_MOVES.items() for new in targets}
    assert {new for old, new in runs_made if old is None} == {"queued"}  # born queued
    assert deliveries_made <= {(old.value, new.value) for old, targets in DELIVERY_MOVES.items()
                               for new in targets}
    # ... and these paths did make the moves they stand for
    assert {("running", "partial"), ("partial", "queued"), ("running", "success"),
            ("running", "running"), ("running", "queued"), ("running", "failed"),
            ("queued", "missed")} <= runs_made
    assert {("pending", "sent"), ("pending", "failed"), ("failed", "pending")} <= deliveries_made
    assert [r.status for r in runs_of(db_url)][-1] == RunStatus.MISSED


def test_reopening_a_failed_delivery_is_recorded_and_announced_once(
    db_url: str, videos_file: str, mail_sink: MailSink, seen: list[StateChange]  # noqa: F811
) -> None:
    mail_sink.refuse["gone@acme.example"] = (550, "5.1.1 no such user")
    schedule_id = make_schedule(videos_file, emails=["gone@acme.example"], formats=("csv",))
    with session_scope() as session:
        sent = runs.send_now(session, OPERATOR, schedule_id, now=utcnow(), dispatch=in_process)
    assert sent.status == "failed"
    seen.clear()

    with session_scope() as session:
        runs.resend_failed(session, OPERATOR, sent.run_id, now=utcnow(), dispatch=lambda _: None)

    with session_scope() as session:
        [delivery] = session.exec(select(Delivery).where(Delivery.run_id == sent.run_id)).all()
    assert delivery.status == DeliveryStatus.PENDING and delivery.error is None
    assert [(c.kind, c.id, c.old, c.new) for c in seen] == [
        ("delivery", delivery.id, "failed", "pending"), ("run", sent.run_id, "failed", "queued")]


def test_a_rolled_back_move_is_never_announced(
    db_url: str, videos_file: str, seen: list[StateChange]  # noqa: F811
) -> None:
    run_id = manual_run(make_schedule(videos_file, emails=["a@acme.example"]))
    seen.clear()
    with pytest.raises(RuntimeError):
        with session_scope() as session:
            move(session, RunStatus.QUEUED, RunStatus.FAILED, ReportRun.__table__.c.id == run_id)
            raise RuntimeError("the transaction goes back")
    assert seen == []
    with session_scope() as session:
        assert session.get(ReportRun, run_id).status == RunStatus.QUEUED
