"""Migrations build the schema on empty databases, and the models match them exactly."""

from __future__ import annotations

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
