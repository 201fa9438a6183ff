"""The CLI prints a schedule's times on the schedule's own clock (`schedule add`, `schedule
list`, `runs`), and no next run for a paused schedule: it fires again only from its resume."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlmodel import Session, select

from models.runs import ReportRun
from models.schedules import Schedule
from tests.seeding import manual_run

REPORT = Path(__file__).parents[1] / "fixtures" / "video-performance.yaml"
BERLIN = ZoneInfo("Europe/Berlin")
ON_BERLIN_CLOCK = r"\d{4}-\d\d-\d\d 09:00 CES?T"


def test_schedule_times_are_on_the_schedule_s_clock_and_a_paused_one_has_no_next_run(
        cli, session: Session) -> None:
    for args in (["tenant", "add", "acme", "--name", "Acme", "--timezone", "Europe/Berlin"],
                 ["report", "add", "--tenant", "acme", REPORT]):
        assert cli(*args).exit_code == 0
    added = cli("schedule", "add", "--tenant", "acme", "--report", "video-performance",
                "--cadence", "daily", "--at", "09:00")
    assert re.fullmatch(rf"schedule 1 added: At 09:00 \(Europe/Berlin\); next run {ON_BERLIN_CLOCK}\n",
                        added.stdout), added.stdout
    paused = cli("schedule", "add", "--tenant", "acme", "--report", "video-performance",
                 "--cron", "0 9 * * 1", "--paused")
    assert paused.stdout.endswith("; no next run (paused)\n"), paused.stdout

    # Given the daily schedule last fired for 8 March 2026 09:00 in Berlin (08:00 UTC)
    daily = session.get(Schedule, 1)
    daily.last_fired_at, daily.last_status = datetime(2026, 3, 8, 8, 0, tzinfo=UTC), "success"
    session.commit()
    listed = cli("schedule", "list", "--tenant", "acme").stdout.splitlines()
    assert re.search(rf"active  next run {ON_BERLIN_CLOCK}  last success, slot 2026-03-08 09:00 CET$",
                     listed[0]), listed[0]
    assert listed[1].endswith("paused  no next run (paused)  never run"), listed[1]
    assert "+00:00" not in "".join(listed) and "UTC" not in "".join(listed)
    # --json keeps the stored instants, in UTC, for scripts
    assert json.loads(cli("schedule", "list", "--tenant", "acme", "--json").stdout)[0][
        "last_fired_at"] == "2026-03-08T08:00:00+00:00"

    run_id = manual_run(1)
    session.expire_all()
    slot = session.exec(select(ReportRun.scheduled_for).where(ReportRun.id == run_id)).one()
    runs = cli("runs", "--tenant", "acme").stdout
    assert f"schedule 1     {slot.astimezone(BERLIN):%Y-%m-%d %H:%M %Z}  queued" in runs, runs


def test_a_zone_that_no_longer_exists_shows_utc(cli, session: Session) -> None:
    for args in (["tenant", "add", "acme", "--name", "Acme"],
                 ["report", "add", "--tenant", "acme", REPORT],
                 ["schedule", "add", "--tenant", "acme", "--report", "video-performance",
                  "--cron", "0 9 * * *"]):
        assert cli(*args).exit_code == 0
    schedule = session.get(Schedule, 1)
    schedule.timezone = "Mars/Olympus_Mons"  # stored before its zone left the database
    session.commit()
    listed = cli("schedule", "list", "--tenant", "acme")
    assert listed.exit_code == 0, listed.stderr
    assert re.search(r"next run \d{4}-\d\d-\d\d 09:00 UTC", listed.stdout), listed.stdout
