"""Every actor states its own limits; the tick is periodic; the CLI drives the same path."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from jobs import actors
from models.db import session_scope, utcnow
from models.schedules import Schedule
from tests.jobs.helpers import add_schedules, make_tenant


@pytest.mark.parametrize("actor", [actors.tick_actor, actors.query_stage, actors.render_stage,
                                   actors.deliver_stage])
def test_every_actor_states_retries_backoff_and_time_limit(actor) -> None:
    for option in ("max_retries", "time_limit"):
        assert option in actor.options, (actor.actor_name, option)
    if actor.options["max_retries"]:
        assert {"min_backoff", "max_backoff"} <= set(actor.options)
        assert actor.options["max_backoff"] <= 5 * 60_000  # minutes, not Dramatiq's week
    assert actor.options["time_limit"] <= 30 * 60_000


def test_the_tick_is_triggered_every_minute_by_periodiq() -> None:
    assert str(actors.tick_actor.options["periodic"]) == "* * * * *"
    assert actors.tick_actor.options["max_retries"] == 0  # the next minute is the retry


def test_send_now_and_run_make_manual_runs_and_runs_lists_them(cli, db_url: str, tmp_path) -> None:
    # Given a tenant whose data source is a SQLite file (embedded mode: no REDIS_URL)
    import sqlite3

    data = tmp_path / "data.db"
    with sqlite3.connect(data) as conn:
        conn.execute("CREATE TABLE t (v INTEGER)")
        conn.execute("INSERT INTO t VALUES (41), (1)")
    tenant, report = make_tenant(db_url, datasource=f"sqlite:///{data}")
    [sid] = add_schedules(db_url, tenant, report, 1, cron="0 9 * * *",
                          next_run_at=utcnow() + timedelta(hours=1))

    assert cli("send-now", sid).exit_code == 0
    result = cli("run", sid, "--json")
    runs = json.loads(cli("runs", "--schedule", sid, "--json").stdout)

    assert len(runs) == 2 and all(r["manual"] for r in runs)
    for run in runs:
        assert {"id", "schedule_id", "scheduled_for", "status", "error", "deliveries"} <= set(run)
        assert run["attempts"] == 1  # each went through the query stage exactly once
    assert json.loads(result.stdout)["id"] == runs[0]["id"]
    with session_scope(db_url) as session:
        assert session.get(Schedule, sid).next_run_at > utcnow()  # manual runs leave the plan alone
