"""The Health page as a viewer meets it (Streamlit's AppTest, logged in through the form, on
SQLite; `check_health` and the agenda are tested on both backends in tests/jobs/).

"Now" is pinned by replacing `admin.health_view.now`, the page's clock, with 2026-03-05 15:00
UTC (Berlin is on CET). The tick's heartbeat, the schedules and the stuck runs are real rows;
queues and render browsers come from a real Redis when the test configures one.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from dramatiq import Message
from sqlmodel import Session
from streamlit.testing.v1 import AppTest

from admin.health import view as health_view
from models.definition import parse_definition
from models.health import RenderBrowserBeacon, record_tick
from models.runs import ReportRun, RunStatus
from models.settings import get_settings
from services import members, reports, tenants
from services.access import OPERATOR
from tests.admin.test_app_login import PASSWORD, log_in, new_app, readable, shown
from tests.conftest import REDIS_TEST_URL
from tests.delivery.conftest import REPORT
from tests.seeding import add_schedule

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)

NOW = datetime(2026, 3, 5, 15, 0, tzinfo=UTC)
VIEWER = "vera@acme.example"
SECRET = {"slug": "secret", "title": "Beta Secret Numbers", "params": {},
          "sections": [{"kind": "kpi", "title": "Total", "sql": "SELECT 1 AS value"}]}
MISSING = "/nonexistent/chromium"


@pytest.fixture(autouse=True)
def page_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(health_view, "now", lambda: NOW)
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.setenv("RENDER_PDF_STUB", "false")
    monkeypatch.setenv("HERALD_CHROMIUM_PATH", MISSING)
    monkeypatch.setenv("MAIL_SMTP_HOST", "127.0.0.1")  # the schedules' e-mail can be sent
    monkeypatch.setenv("MAIL_FROM", "herald@acme.example")
    get_settings.cache_clear()


@pytest.fixture
def world(session: Session) -> dict[str, int]:
    """acme (Berlin; Vera views it): 3 schedules at 09:00 and a run queued 10 minutes ago.
    beta (nobody from acme): 2 schedules at 09:00 UTC, to secret@beta.example, and a stuck run.
    The last tick was 14 minutes ago."""
    acme = tenants.add_tenant(session, OPERATOR, "acme", "Acme", "Europe/Berlin")
    beta = tenants.add_tenant(session, OPERATOR, "beta", "Beta", "UTC")
    reports.save_report(session, OPERATOR, acme, parse_definition(REPORT))
    reports.save_report(session, OPERATOR, beta, parse_definition(SECRET))
    ours = [add_schedule(session, acme, "video-performance", now=NOW,
                                    cron_expr="0 9 * * *", emails=["boss@acme.example"])
            for _ in range(3)]
    theirs = [add_schedule(session, beta, "secret", now=NOW, cron_expr="0 9 * * *",
                                      emails=["secret@beta.example"]) for _ in range(2)]
    members.grant(session, OPERATOR, acme.id, VIEWER, "viewer", PASSWORD)
    record_tick(session, host="worker-1", started_at=NOW - timedelta(minutes=14),
                finished_at=NOW - timedelta(minutes=14) + timedelta(milliseconds=35),
                duration_ms=35, claimed=3)

    def queued(schedule) -> int:
        run = ReportRun(schedule_id=schedule.id, tenant_id=schedule.tenant_id, status=RunStatus.QUEUED,
                        scheduled_for=NOW - timedelta(hours=6), queued_at=NOW - timedelta(minutes=10))
        session.add(run)
        session.flush()
        return run.id

    ids = {"ours": queued(ours[0]), "theirs": queued(theirs[0])}
    session.commit()
    return ids


def health_page() -> AppTest:
    at = log_in(new_app().run(), VIEWER)
    at.switch_page("health/page.py").run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Health"
    return at


def everything(at: AppTest) -> str:
    """All the page's text, its tables' cells and its links' labels."""
    cells = [" ".join(map(str, frame.value.astype(str).to_numpy().ravel())) for frame in at.main.dataframe]
    links = [readable(link.proto.label) for link in at.main.get("page_link")]
    return "\n".join([shown(at.main), *[str(m.value) for m in at.main.metric], *cells, *links])


def test_a_viewer_sees_the_problems_the_tick_the_stuck_runs_and_the_agenda(world) -> None:
    at = health_page()
    [error] = at.error
    assert readable(error.value).startswith("- The last tick was 14 min ago; is `periodiq jobs` running?\n")
    assert f"- 2 runs are stuck (queued past 60 s or with an expired lease): {world['ours']}, " \
           f"{world['theirs']}." in error.value
    metrics = {m.label: m.value for m in at.main.metric}
    assert metrics == {"Last tick": "14 min ago", "Tick took": "35 ms", "Due, not claimed": "0",
                       "Stuck runs": "2"}
    text = shown(at.main)
    assert "The last tick started Thu 05 Mar 2026 15:46 CET (14:46 UTC) on worker-1; 5 schedules exist." in text
    # Only acme's stuck run is named, and linked to its story on the History page.
    [link] = at.main.get("page_link")
    assert readable(link.proto.label) == (f"Run {world['ours']}: Video performance, queued since "
                                "Thu 05 Mar 2026 15:50 CET (14:50 UTC)")
    assert (link.proto.page, link.proto.query_string) == ("history", f"run={world['ours']}&tenant=acme")
    # Embedded: no queues; the browser is looked for here, as the renderer would.
    assert "No REDIS_URL: herald runs embedded, in one process, so there are no queues." in \
        [i.value for i in at.info]
    assert [readable(w.value) for w in at.warning] == [
        f"Embedded mode: PDFs are printed here, but there is no browser. HERALD_CHROMIUM_PATH="
        f"{MISSING} does not exist; point it at a Chromium binary or unset it."]
    # The agenda: beta's 2 at 09:00 UTC and acme's 3 at 09:00 Berlin (08:00 UTC) tomorrow.
    assert "5 runs due from 5 schedules (all tenants)." in text
    [chart] = at.get("vega_lite_chart")
    spec = json.loads(chart.proto.spec)
    assert spec["mark"]["type"] == "bar"
    assert spec["encoding"]["x"]["title"] == "Time (Europe/Berlin)"
    busiest = next(f.value for f in at.main.dataframe if "Runs" in f.value.columns)
    assert busiest.to_dict("records") == [
        {"Time (Europe/Berlin)": "Fri 06 Mar 09:00 CET", "UTC": "Fri 06 Mar 08:00 UTC", "Runs": 3},
        {"Time (Europe/Berlin)": "Fri 06 Mar 10:00 CET", "UTC": "Fri 06 Mar 09:00 UTC", "Runs": 2}]
    # Numbers only from other tenants: no names, reports or recipients.
    page = everything(at)
    for secret in ("Beta", "beta", "Secret", "secret@beta.example"):
        assert secret not in page


def test_the_agenda_chart_counts_every_minute_of_the_next_day(world, session: Session) -> None:
    from services.agenda import agenda

    frame = health_view.agenda_frame(agenda(session, NOW), health_view.ZoneInfo("Europe/Berlin"))
    assert len(frame) == 24 * 60 and frame["Runs"].sum() == 5
    peak = frame[frame["Runs"] > 0].to_dict("records")
    assert peak == [{"Minute": "2026-03-06T09:00Z", "Local": "Fri 09:00 CET", "UTC": "Fri 08:00 UTC", "Runs": 3},
                    {"Minute": "2026-03-06T10:00Z", "Local": "Fri 10:00 CET", "UTC": "Fri 09:00 UTC", "Runs": 2}]


def test_a_healthy_herald_says_so(session: Session) -> None:
    acme = tenants.add_tenant(session, OPERATOR, "acme", "Acme", "Europe/Berlin")
    members.grant(session, OPERATOR, acme.id, VIEWER, "viewer", PASSWORD)
    record_tick(session, host="worker-1", started_at=NOW - timedelta(seconds=30),
                finished_at=NOW - timedelta(seconds=29), duration_ms=12, claimed=0)
    session.commit()
    at = health_page()
    assert [s.value for s in at.success] == [
        "Healthy: the tick is on time, nothing is due or stuck, no channel is failing."]
    assert not at.error and not at.main.get("page_link")
    assert "0 runs due from 0 schedules (all tenants)." in shown(at.main)


def test_with_redis_the_queues_and_render_browsers_show(world, redis_broker, redis_namespace,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(health_view, "now", lambda: datetime.now(UTC))  # Redis heartbeats are real
    for run_id in range(3):
        redis_broker.enqueue(Message(queue_name="query.default", actor_name="query_stage",
                                     args=(run_id,), kwargs={}, options={}))
    RenderBrowserBeacon(REDIS_TEST_URL, redis_namespace).launched("131.0.6778.33")
    RenderBrowserBeacon(REDIS_TEST_URL, redis_namespace).failed(f"HERALD_CHROMIUM_PATH={MISSING} does not exist.")
    at = health_page()
    frames = {tuple(f.value.columns): f.value for f in at.main.dataframe}
    queues = frames["Queue", "Ready", "Delayed", "Dead"].set_index("Queue")
    assert queues.loc["query.default"].to_dict() == {"Ready": 3, "Delayed": 0, "Dead": 0}
    assert queues.loc["deliver"].to_dict() == {"Ready": 0, "Delayed": 0, "Dead": 0}
    # One process wrote twice: the failure replaced the launch, and it is a problem.
    [browser] = frames["Host", "Process", "Chromium", "Status", "Since", "Last seen"].to_dict("records")
    assert (browser["Chromium"], browser["Status"]) == (
        "—", f"did not start: HERALD_CHROMIUM_PATH={MISSING} does not exist.")
    assert f"UTC: HERALD_CHROMIUM_PATH={MISSING} does not exist." in readable(at.error[0].value)
    assert "Dramatiq processes seen in the last few seconds" in shown(at.main)
    assert not at.warning  # a render process reported: the page did not look for a browser here
