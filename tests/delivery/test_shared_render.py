"""Render once, deliver to many (`pipeline.sharing`): scheduled runs due in the same minute that
make the same documents share one query and one render, across worker processes, never across
tenants, parameters or periods; each still delivers to its own recipients and records its own
run. A failed shared render fails the runs that waited on it with its reason; a leader killed
while rendering leaves the others to render again, with nothing lost and nothing sent twice.

The worker processes here are `python -c "run_in_process(run_id)"`: the pipeline a `dramatiq
jobs` thread runs, in processes of their own, so that which process takes which run is up to
the test and not to the broker's prefetch.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlmodel import select

from jobs.tick import tick
from models.artifacts import read_content
from models.db import session_scope, utcnow
from models.definition import parse_definition
from models.runs import Artifact, RenderShare, ReportRun, RunStatus, ShareState
from models.schedules import Schedule
from pipeline import metrics
from pipeline.in_process import run_in_process
from tests.delivery.conftest import REPORT
from tests.delivery.servers import MailSink
from tests.renderers.conftest import pdf_text
from tests.seeding import add_schedule, add_tenant, save_report

pytestmark = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
ROOT = Path(__file__).resolve().parents[2]


def slow(seconds: float, sql: str = "SELECT 1 AS value") -> dict:
    """The report with a first KPI that takes `seconds` (`sql` over pg_sleep's one row)."""
    kpi = {"kind": "kpi", "title": "Slow", "sql": f"{sql} FROM pg_sleep({seconds})"}
    return {**REPORT, "sections": [kpi, *REPORT["sections"]]}


def due_runs(datasource: str, specs: Sequence[dict], report: dict = REPORT) -> list[int]:
    """A schedule per spec ({"email", "tenant"?, "params"?, "timezone"?}), all due at the start of
    this minute, claimed by one tick; the runs' ids in the specs' order."""
    with session_scope() as session:
        tenants = {}
        for spec in specs:
            slug = spec.get("tenant", "acme")
            if slug not in tenants:
                tenants[slug] = add_tenant(session, slug, slug.title(), "Europe/Berlin", datasource)
                save_report(session, tenants[slug], parse_definition(report))
            tenant = tenants[slug]
            schedule = add_schedule(session, tenant, report["slug"], now=utcnow(), cron_expr="* * * * *",
                                    timezone=spec.get("timezone", "UTC"), emails=[spec["email"]],
                                    params=spec.get("params"), formats=["pdf"])
            spec["schedule"] = schedule.id
    now = utcnow()
    slot = now.replace(second=0, microsecond=0)
    with session_scope() as session:
        session.execute(sa.update(Schedule).values(next_run_at=slot))
    claimed: list[tuple[int, int]] = []
    tick(now, claimed.extend)
    with session_scope() as session:
        by_schedule = {r.schedule_id: r.id for r in session.exec(select(ReportRun)).all()}
    assert len(claimed) == len(specs)
    return [by_schedule[spec["schedule"]] for spec in specs]


def pdfs(run_ids: Sequence[int]) -> dict[int, Artifact]:
    with session_scope() as session:
        return {a.run_id: a for a in session.exec(
            select(Artifact).where(Artifact.run_id.in_(run_ids), Artifact.kind == "pdf")).all()}


def runs(run_ids: Sequence[int]) -> list[ReportRun]:
    with session_scope() as session:
        return [session.get(ReportRun, i) for i in run_ids]


def received(sink: MailSink) -> dict[str, list]:
    """Each recipient's messages."""
    by_recipient: dict[str, list] = {}
    for mail in sink.mails:
        for rcpt in mail.rcpt_tos:
            by_recipient.setdefault(rcpt, []).append(mail)
    return by_recipient


def attached_pdf(mail) -> bytes:
    return next(p.get_payload(decode=True) for p in mail.message.walk()
                if p.get_content_type() == "application/pdf")


def wait_for(predicate: Callable[[], object], timeout: float = 60) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.1)
    raise AssertionError(f"gave up after {timeout} s")


def leader_of_share() -> int | None:
    with session_scope() as session:
        share = session.exec(select(RenderShare)).first()
        return share.leader_run_id if share and share.state == ShareState.RENDERING else None


def test_schedules_due_together_with_the_same_documents_share_one_render(
    db_url: str, videos_db: str, mail_sink: MailSink, tmp_path: Path
) -> None:
    # Given three schedules of one report with the same params, due in the same minute
    emails = ["anna@acme.example", "boris@acme.example", "chen@acme.example"]
    run_ids = due_runs(videos_db, [{"email": e} for e in emails])
    shared_before = metrics.SHARED_RENDERS._value.get()

    # When each run goes through the pipeline
    for run_id in run_ids:
        run_in_process(run_id)

    # Then one PDF was rendered, and each run's document is its bytes
    documents = pdfs(run_ids)
    holders = {a.content_id or a.id for a in documents.values()}
    assert len(holders) == 1
    assert documents[run_ids[0]].content_id is None  # the first led
    assert metrics.SHARED_RENDERS._value.get() - shared_before == 2
    # And each run ended on its own, each recipient receiving one message with that PDF
    assert [r.status for r in runs(run_ids)] == [RunStatus.SUCCESS] * 3
    mails = received(mail_sink)
    assert sorted(mails) == emails and all(len(m) == 1 for m in mails.values())
    with session_scope() as session:
        stored = read_content(session, documents[run_ids[2]])
    assert {attached_pdf(m[0]) for m in mails.values()} == {stored}
    assert "Top videos" in pdf_text(stored, tmp_path)
    # And the History's download of a follower's document is the same bytes
    from services import history
    from services.access import OPERATOR

    with session_scope() as session:
        download = history.document(session, OPERATOR, run_ids[1], "pdf", now=utcnow())
    assert download.content == stored


@pytest.mark.parametrize("second", [
    {"email": "boris@beta.example", "tenant": "beta"},                       # another tenant
    {"email": "boris@acme.example", "params": {"campaign": "Campaign B"}},   # other params
    {"email": "boris@acme.example", "timezone": "Pacific/Kiritimati"},       # another day: period
], ids=["tenant", "params", "period"])
def test_a_different_tenant_params_or_period_never_shares(
    db_url: str, videos_db: str, mail_sink: MailSink, second: dict
) -> None:
    # Given two schedules due in the same minute that differ in one thing
    report = {**REPORT, "sections": [{"kind": "kpi", "title": "Views in the period",
                                      "sql": "SELECT count(*) AS value FROM videos "
                                             "WHERE :period_start <= :period_end"}, *REPORT["sections"]],
              "period": "previous_day"}
    run_ids = due_runs(videos_db, [{"email": "anna@acme.example"}, second], report)

    # When both run
    for run_id in run_ids:
        run_in_process(run_id)

    # Then each rendered its own PDF, and each recipient got one message
    documents = pdfs(run_ids)
    assert all(a.content_id is None for a in documents.values()) and len(documents) == 2
    assert [r.status for r in runs(run_ids)] == [RunStatus.SUCCESS] * 2
    assert sorted(len(m) for m in received(mail_sink).values()) == [1, 1]


def test_a_failed_shared_query_fails_the_runs_that_waited_with_its_reason(
    db_url: str, videos_db: str, mail_sink: MailSink
) -> None:
    # Given two runs of one report whose first query fails after a second
    report = slow(1, "SELECT 1 / (count(*) - 1) AS value")
    run_ids = due_runs(videos_db, [{"email": "anna@acme.example"}, {"email": "boris@acme.example"}],
                       report)

    # When the first leads the render and the second waits for it
    leader = threading.Thread(target=run_in_process, args=(run_ids[0],))
    leader.start()
    wait_for(lambda: leader_of_share() == run_ids[0])
    run_in_process(run_ids[1])
    leader.join()

    # Then both failed with the same reason, and nothing was sent
    first, second = runs(run_ids)
    assert first.status == second.status == RunStatus.FAILED
    assert "division by zero" in first.error and second.error == first.error
    assert mail_sink.mails == []


def test_a_failed_shared_render_fails_its_waiters_attempt_with_the_reason_and_they_retry(
    db_url: str, videos_db: str, mail_sink: MailSink
) -> None:
    # Given two runs of one report whose query takes a second
    run_ids = due_runs(videos_db, [{"email": "anna@acme.example"}, {"email": "boris@acme.example"}],
                       slow(1))

    # When the first leads in a worker whose browser cannot start, and the second waits for it
    leader = worker(run_ids[0], HERALD_CHROMIUM_PATH="/nonexistent/chromium")
    wait_for(lambda: leader_of_share() == run_ids[0])
    from pipeline.sharing import SharedRenderFailed

    with pytest.raises(SharedRenderFailed, match="HERALD_CHROMIUM_PATH"):
        run_in_process(run_ids[1])
    assert leader.wait(timeout=60) != 0

    # Then the waiter's attempt failed with the leader's reason, and it is queued for a retry
    first, second = runs(run_ids)
    assert "HERALD_CHROMIUM_PATH=/nonexistent/chromium does not exist" in first.error
    assert second.status == RunStatus.QUEUED and second.error == first.error
    # And its retry leads the render again, with a browser that starts
    run_in_process(run_ids[1])
    assert runs(run_ids)[1].status == RunStatus.SUCCESS
    assert pdfs(run_ids)[run_ids[1]].content_id is None
    assert list(received(mail_sink)) == ["boris@acme.example"]


def worker(run_id: int, **env: str) -> subprocess.Popen:
    """A process of its own running the run's pipeline, as a worker thread would."""
    return subprocess.Popen([sys.executable, "-c", "from pipeline.in_process import run_in_process; "
                             f"run_in_process({run_id})"],
                            cwd=ROOT, env={**os.environ, **env}, start_new_session=True,
                            stderr=subprocess.DEVNULL)


def test_two_worker_processes_racing_for_the_same_slot_share_one_render(
    db_url: str, videos_db: str, mail_sink: MailSink, tmp_path: Path
) -> None:
    # Given two schedules with the same documents due in the same minute
    run_ids = due_runs(videos_db, [{"email": "anna@acme.example"}, {"email": "boris@acme.example"}],
                       slow(1))

    # When two worker processes take them at the same time
    workers = [worker(run_id) for run_id in run_ids]
    assert [w.wait(timeout=120) for w in workers] == [0, 0]

    # Then one rendered the PDF and the other reused it, and each recipient got it once
    documents = pdfs(run_ids)
    assert sorted(a.content_id is None for a in documents.values()) == [False, True]
    assert [r.status for r in runs(run_ids)] == [RunStatus.SUCCESS] * 2
    mails = received(mail_sink)
    assert sorted(mails) == ["anna@acme.example", "boris@acme.example"]
    assert all(len(m) == 1 for m in mails.values())
    assert attached_pdf(mails["anna@acme.example"][0]) == attached_pdf(mails["boris@acme.example"][0])


def test_a_leader_killed_while_rendering_leaves_the_others_to_render_again(
    db_url: str, videos_db: str, mail_sink: MailSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given short leases, and two runs of one report whose query takes four seconds
    monkeypatch.setenv("HERALD_LEASE_SECONDS", "5")
    run_ids = due_runs(videos_db, [{"email": "anna@acme.example"}, {"email": "boris@acme.example"}],
                       slow(4))

    # When the first run's worker is killed while it leads the render, the other waiting on it
    first, second = worker(run_ids[0]), None
    try:
        wait_for(lambda: leader_of_share() == run_ids[0])
        second = worker(run_ids[1])
        time.sleep(1)
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
        # Then the waiting run renders the documents itself once the leader's lease runs out
        assert second.wait(timeout=120) == 0
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
    assert runs(run_ids)[1].status == RunStatus.SUCCESS
    assert pdfs(run_ids)[run_ids[1]].content_id is None

    # And the killed run, taken again once its lease ran out (as the tick or a redelivery
    # would), reuses that render and sends once
    assert worker(run_ids[0]).wait(timeout=120) == 0
    killed, other = runs(run_ids)
    assert killed.status == RunStatus.SUCCESS and killed.attempts == 2
    assert pdfs(run_ids)[run_ids[0]].content_id == pdfs(run_ids)[run_ids[1]].id
    mails = received(mail_sink)
    assert sorted(mails) == ["anna@acme.example", "boris@acme.example"]
    assert all(len(m) == 1 for m in mails.values())


def test_sharing_can_be_turned_off(
    db_url: str, videos_db: str, mail_sink: MailSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given HERALD_SHARE_RENDERS=false and two schedules with the same documents
    monkeypatch.setenv("HERALD_SHARE_RENDERS", "false")
    from models.settings import get_settings

    get_settings.cache_clear()
    run_ids = due_runs(videos_db, [{"email": "anna@acme.example"}, {"email": "boris@acme.example"}])

    # When both run, then each renders its own
    for run_id in run_ids:
        run_in_process(run_id)
    assert all(a.content_id is None for a in pdfs(run_ids).values())
    with session_scope() as session:
        assert session.exec(select(RenderShare)).all() == []


def test_send_if_is_decided_once_from_the_shared_data(
    db_url: str, videos_db: str, mail_sink: MailSink
) -> None:
    # Given two schedules of a report sent only when its CSV query returns rows, which it does not
    report = {**REPORT, "send_if": "rows",
              "csv": {"sql": "SELECT title FROM videos WHERE campaign_tag = 'no such campaign'"}}
    run_ids = due_runs(videos_db, [{"email": "anna@acme.example"}, {"email": "boris@acme.example"}],
                       report)

    # When both run
    for run_id in run_ids:
        run_in_process(run_id)

    # Then the first asked the data, and both were skipped for its reason; nothing was sent
    first, second = runs(run_ids)
    assert first.status == second.status == RunStatus.SKIPPED
    assert "returned no rows" in first.error and second.error == first.error
    with session_scope() as session:
        [share] = session.exec(select(RenderShare)).all()
    assert (share.leader_run_id, share.state) == (run_ids[0], ShareState.SKIPPED)
    assert mail_sink.mails == []
