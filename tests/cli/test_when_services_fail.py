"""What the `herald` command does when what it needs is missing or down: every `--help`
without a database, read commands against a SQLite file that does not exist, PostgreSQL and
Redis on closed ports, and a send-now the broker refused followed by a tick that finds
nothing to send. Each failure is one sentence on stderr, exit status 1, and nothing written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from herald.cli import app
from models.settings import get_settings
from tests.delivery.servers import free_port
from tests.seeding import count_rows

ROOT = Path(__file__).resolve().parents[2]
REPORT = ROOT / "tests" / "fixtures" / "video-performance.yaml"


def command_paths(command: typer.core.TyperGroup | typer.core.TyperCommand,
                  path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every command and group of `herald`, as the words that name it."""
    yield path
    for name, sub in getattr(command, "commands", {}).items():
        yield from command_paths(sub, (*path, name))


def herald(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """`python -m herald ARGS` in a process of its own, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "herald", *args], capture_output=True, text=True,
                          env={**os.environ, **env}, cwd=ROOT, timeout=120)


def one_sentence(result: subprocess.CompletedProcess) -> str:
    """The error a failed command printed: exactly one line, no traceback."""
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and lines[0].endswith("."), lines[0]
    return lines[0]


def test_every_help_works_without_a_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "nowhere" / "herald.db"
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{missing}")
    get_settings.cache_clear()
    paths = list(command_paths(typer.main.get_command(app)))
    assert len(paths) > 30 and ("schedule", "add") in paths and ("tick",) in paths
    for path in paths:
        result = CliRunner().invoke(app, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        assert "Usage: herald" in result.output, path
    assert not missing.parent.exists()
    get_settings.cache_clear()


@pytest.mark.parametrize("args", [("runs",), ("schedule", "list", "--tenant", "acme"),
                                  ("token", "list", "--tenant", "acme"), ("health",),
                                  ("send-now", "1"), ("admin",)])
def test_a_missing_sqlite_file_is_named_and_not_created(tmp_path: Path, args: tuple[str, ...]) -> None:
    missing = tmp_path / "herald.db"
    sentence = one_sentence(herald(*args, env={"DATABASE_URL": f"sqlite:///{missing}"}))
    assert sentence == (f"error: There is no database at {missing} (DATABASE_URL); run `herald db "
                        f"upgrade` to create one there, or correct DATABASE_URL.")
    assert list(tmp_path.iterdir()) == []


def test_db_upgrade_into_a_directory_that_does_not_exist(tmp_path: Path) -> None:
    sentence = one_sentence(herald("db", "upgrade", env={
        "DATABASE_URL": f"sqlite:///{tmp_path}/typo/herald.db"}))
    assert f"The directory {tmp_path}/typo of DATABASE_URL's SQLite file does not exist" in sentence
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args", [("db", "upgrade"), ("send-now", "1"), ("runs",)])
def test_postgresql_on_a_closed_port(args: tuple[str, ...]) -> None:
    url = f"postgresql+psycopg://herald:secret-pw@127.0.0.1:{free_port()}/herald"
    sentence = one_sentence(herald(*args, env={"DATABASE_URL": url}))
    assert sentence.startswith("error: herald's database could not be used (")
    assert "Connection refused" in sentence
    assert sentence.endswith("check that it is running and that DATABASE_URL points at it.")
    assert "secret-pw" not in sentence


@pytest.fixture
def migrated_postgres(create_pg_database) -> str:
    url = create_pg_database()
    subprocess.run([sys.executable, "-m", "herald", "db", "upgrade"], check=True,
                   env={**os.environ, "DATABASE_URL": url}, cwd=ROOT, capture_output=True)
    return url


@pytest.mark.parametrize("dead", [("redis://127.0.0.1:{port}/0", "Redis"),
                                  ("amqp://herald:herald@127.0.0.1:{port}/%2F", "RabbitMQ")],
                         ids=["redis", "rabbitmq"])
def test_send_now_with_the_broker_down_leaves_nothing_for_the_tick(
        migrated_postgres: str, redis_namespace: str, dead: tuple[str, str]) -> None:
    """The run is not committed: once the broker is back, the tick finds nothing to send."""
    env = {"DATABASE_URL": migrated_postgres, "HERALD_REDIS_NAMESPACE": redis_namespace}
    for args in (["tenant", "add", "acme", "--name", "Acme", "--email", "ops@acme.example"],
                 ["report", "add", "--tenant", "acme", str(REPORT)],
                 ["schedule", "add", "--tenant", "acme", "--report", "video-performance",
                  "--cadence", "daily", "--at", "09:00", "--email", "boss@acme.example"]):
        done = herald(*args, env=env)
        assert done.returncode == 0, done.stderr
    url, broker, port = *dead, free_port()
    sentence = one_sentence(herald("send-now", "1", env={**env, "REDIS_URL": url.format(port=port)}))
    assert sentence == (f"error: {broker} at REDIS_URL (127.0.0.1:{port}) does not answer (Connection "
                        f"refused); nothing was sent or queued: send again once it answers.")

    alive = {**env, "REDIS_URL": os.environ.get("HERALD_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")}
    ticked = herald("tick", "--json", env=alive)  # the schedule's own fire is hours away
    assert ticked.returncode == 0, ticked.stderr
    assert json.loads(ticked.stdout)["queued"] == []
    from sqlmodel import Session

    from models.db import get_engine
    from models.runs import ReportRun
    with Session(get_engine(migrated_postgres)) as session:
        assert count_rows(session, ReportRun) == 0
