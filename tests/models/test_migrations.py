"""Migrations build the schema on empty databases, and the models match them exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel
from typer.testing import CliRunner

from herald.cli import app
from models import migrate
from models.db import get_engine
from models.settings import get_settings


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'empty.db'}"
    return request.getfixturevalue("create_pg_database")()


def test_db_upgrade_builds_every_table_and_autogenerate_finds_no_difference(
    empty_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an empty database, when `herald db upgrade` runs against it
    monkeypatch.setenv("DATABASE_URL", empty_url)
    get_settings.cache_clear()
    result = CliRunner().invoke(app, ["db", "upgrade"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert f"revision {migrate.current_head()}" in result.output

    # Then every model table exists and autogenerate sees nothing to change
    engine = get_engine(empty_url)
    tables = set(sa.inspect(engine).get_table_names())
    assert {t.name for t in SQLModel.metadata.sorted_tables} <= tables
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}),
                                SQLModel.metadata)
    assert diff == []


def test_upgrade_is_idempotent_and_downgrade_reverses_it(empty_url: str) -> None:
    migrate.upgrade(empty_url)
    migrate.upgrade(empty_url)  # a second upgrade is a no-op, not an error
    from alembic import command

    command.downgrade(migrate.alembic_config(empty_url), "base")
    assert set(sa.inspect(get_engine(empty_url)).get_table_names()) <= {"alembic_version"}
    migrate.upgrade(empty_url)
    assert "schedule" in sa.inspect(get_engine(empty_url)).get_table_names()


def test_0016_fills_each_schedules_strip_with_what_the_table_read_from_its_runs(empty_url: str) -> None:
    """Migration 0016 keeps the "Last 10" strip on the schedule row, filled from the runs: for
    each live schedule what the table read before (its last ten runs but test sends, newest
    first by slot then id: their statuses oldest first, the newest slot), with the run ids;
    `models.schedules.fill_recent_runs` (the benchmarks') writes the same."""
    from datetime import UTC, datetime, timedelta

    from models.db import UTCDateTime
    from models.schedules import fill_recent_runs

    migrate.upgrade(empty_url, "0015")
    engine = get_engine(empty_url)
    start = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
    runs = sa.table("report_run", *(sa.column(c) for c in (
        "schedule_id", "tenant_id", "manual", "test", "status", "attempts")),
        sa.column("scheduled_for", UTCDateTime), sa.column("created_at", UTCDateTime))
    statuses = ["success", "failed", "partial", "skipped", "missed", "success", "failed",
                "running", "success", "queued", "failed", "success", "partial", "success"]
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO tenant (slug, name, timezone, active, created_at) "
                             "VALUES ('acme', 'Acme', 'UTC', true, :now)"), {"now": start})
        conn.execute(sa.text("INSERT INTO report (tenant_id, slug, title, definition, created_at) "
                             "VALUES (1, 'r', 'R', '{}', :now)"), {"now": start})
        for deleted in (None, None, start, None):  # the third deleted; the fourth never ran
            conn.execute(sa.text("""
                INSERT INTO schedule (tenant_id, report_id, cron, timezone, formats, channels,
                                      params, active, misfire_grace_seconds, created_at, deleted_at)
                VALUES (1, 1, '0 9 * * *', 'UTC', '["pdf"]', '["email"]', '{}', true, 3600,
                        :now, :deleted)"""), {"now": start, "deleted": deleted})
        rows = [{"schedule_id": 1, "scheduled_for": start + timedelta(days=i), "status": status,
                 "test": False, "manual": False} for i, status in enumerate(statuses)]
        rows += [  # a test send newer than all (not in the strip); a manual send with microseconds
            {"schedule_id": 1, "scheduled_for": start + timedelta(days=20), "status": "failed",
             "test": True, "manual": True},
            {"schedule_id": 1, "scheduled_for": start + timedelta(days=5, microseconds=123456),
             "status": "success", "test": False, "manual": True},
            *({"schedule_id": 2, "scheduled_for": start + timedelta(hours=i), "status": "success",
               "test": False, "manual": False} for i in range(3)),
            {"schedule_id": 3, "scheduled_for": start, "status": "failed", "test": False,
             "manual": False}]
        conn.execute(sa.insert(runs), [{**r, "tenant_id": 1, "attempts": 1, "created_at": start}
                                       for r in rows])
        # What the table read before 0016: each live schedule's last ten runs but tests.
        before = conn.execute(sa.text("""
            SELECT schedule_id, id, status, scheduled_for FROM (
                SELECT r.schedule_id, r.id, r.status, r.scheduled_for,
                       ROW_NUMBER() OVER (PARTITION BY r.schedule_id
                                          ORDER BY r.scheduled_for DESC, r.id DESC) AS n
                FROM report_run r JOIN schedule s ON s.id = r.schedule_id
                WHERE NOT r.test AND s.deleted_at IS NULL) ranked
            WHERE n <= 10 ORDER BY schedule_id, n DESC""")).all()
    expected: dict[int, list] = {1: [], 2: [], 3: [], 4: []}
    for schedule_id, run_id, status, slot in before:
        slot = datetime.fromisoformat(slot) if isinstance(slot, str) else slot
        expected[schedule_id].append((run_id, status, slot.replace(tzinfo=slot.tzinfo or UTC)))

    migrate.upgrade(empty_url, "0016")

    def strips() -> dict[int, list]:
        with engine.connect() as conn:
            found = conn.execute(sa.text("SELECT id, recent_runs FROM schedule ORDER BY id")).all()
        return {i: [(run_id, status, datetime.fromisoformat(slot))
                    for run_id, status, slot in (json.loads(strip) if isinstance(strip, str) else strip)]
                for i, strip in found}

    filled = strips()
    assert filled == expected
    assert [s for _, s, _ in filled[1]] == [  # the ten newest, oldest first, the test aside
        "success", "success", "failed", "running", "success", "queued", "failed", "success",
        "partial", "success"]
    assert filled[1][1][2] == start + timedelta(days=5, microseconds=123456)  # the manual one
    assert (len(filled[2]), filled[3], filled[4]) == (3, [], [])  # deleted: left empty

    with engine.begin() as conn:  # the benchmarks' fill writes the same
        conn.execute(sa.text("UPDATE schedule SET recent_runs = '[]'"))
        fill_recent_runs(conn)
    assert strips() == filled
