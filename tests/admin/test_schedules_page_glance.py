"""The Schedules page at a glance (Streamlit's AppTest on SQLite): the last fire, the strip of
the last outcomes, the ⚠ mark, and a schedule herald paused after failing three times, whose
reason shows where the Resume button is, so one click resumes it.

Fixtures and helpers are those of tests/admin/test_schedules_page.py (the page's clock pinned,
send now run in this process against a SQLite data source and a real SMTP server).
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlmodel import Session

from admin.schedules import view as schedules_view
from models.schedules import Schedule
from tests.admin.test_app_login import readable, shown
from tests.admin.test_schedules_page import (  # noqa: F401 - fixtures
    NOW,
    VIEWER,
    buttons,
    choose,
    click,
    frame,
    on_sqlite,
    page,
    page_clock,
    reread,
    world,
)
from tests.delivery.conftest import fast_retries, mail_sink, videos_file  # noqa: F401
from tests.delivery.servers import MailSink

REASON = ("Paused automatically after 3 failed runs in a row; the last error: 1 of 1 deliveries "
          "failed: email boss@acme.example: the SMTP server refused the recipient: 550 5.1.1 no "
          "such user.")


def warnings(at) -> list[str]:
    return [readable(w.value) for w in at.warning]


@on_sqlite
def test_three_failed_sends_pause_it_and_the_reason_sits_by_resume(
    session: Session, world, mail_sink: MailSink, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    # Given a schedule whose one recipient refuses mail, sent now three times a minute apart
    mail_sink.refuse["boss@acme.example"] = (550, "5.1.1 no such user")
    at = choose(page(), world["mine"])
    for minute in range(3):
        row = frame(at, "Id").set_index("Id").loc[world["mine"]]
        assert not row["Paused"] and not [w for w in warnings(at) if "Paused automatically" in w]
        monkeypatch.setattr(schedules_view, "now", lambda m=minute: NOW + timedelta(minutes=m))
        click(at, "schedule_send_now")

    # Then the table shows it failing, marked, paused, with its three red outcomes
    row = frame(at, "Id").set_index("Id").loc[world["mine"]]
    assert (row["⚠"], row["Last status"], row["Last 10"], row["Paused"]) == ("⚠", "failed", "✕✕✕", True)
    assert row["Last fired"] == "Thu 05 Mar 2026 16:02 CET"
    assert "● success · ◐ partial · ✕ failed · ○ skipped (send_if not met) · – missed" in shown(at.main)
    # And the picked schedule says why, with the Resume button right there
    [warning] = [w for w in warnings(at) if "Paused automatically" in w]
    assert warning.startswith(REASON + " Paused ") and warning.endswith(
        "Fix the cause, then press Resume.")
    assert "schedule_resume" in buttons(at) and "schedule_pause" not in buttons(at)

    # A viewer sees the schedule flagged on arrival, and the reason without the button
    viewer = page(VIEWER)
    assert ("Paused by herald after failing in a row: #1 Video performance. "
            "Pick one to see why and resume it.") in warnings(viewer)
    choose(viewer, world["mine"])
    [seen] = [w for w in warnings(viewer) if "Paused automatically" in w]
    assert seen.startswith(REASON) and seen.endswith("An editor or admin of the tenant can resume it.")
    assert "schedule_resume" not in buttons(viewer)

    # When the editor presses Resume once, it is running again and the reason is gone
    click(at, "schedule_resume")
    assert [s.value for s in at.success] == [f"Schedule {world['mine']} resumed."]
    assert not [w for w in warnings(at) if "Paused" in w]
    row = frame(at, "Id").set_index("Id").loc[world["mine"]]
    assert (row["⚠"], row["Paused"], row["Next fire"]) == ("⚠", False, "Fri 06 Mar 2026 09:00 CET")
    schedule = reread(session).get(Schedule, world["mine"])
    assert (schedule.active, schedule.paused_reason, schedule.paused_at) == (True, None, None)
    assert list(frame(at, "What")["Action"])[:2] == ["resumed", "paused"]
