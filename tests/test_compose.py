"""docker-compose.yml stays valid (checked without a Docker engine), every command it runs
exists in the installed herald, and its database init script gives the demo tenant a role
herald accepts. tests/test_stack.py runs the same commands, without containers."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import periodiq
import psycopg
import pytest
import yaml
from dramatiq.cli import make_argument_parser
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from herald.cli import app
from models.errors import QueryError
from models.settings import get_settings
from tenantdb import check_datasource, open_source
from tests.conftest import service_missing, sqlalchemy_url

ROOT = Path(__file__).parents[1]
HERALD_IMAGE = "herald:local"


def compose_file() -> dict:
    """docker-compose.yml as data (PyYAML resolves its `<<:` merges)."""
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def herald_services() -> dict[str, dict]:
    """The services that run the herald image built by the Dockerfile."""
    return {name: service for name, service in compose_file()["services"].items()
            if service.get("image") == HERALD_IMAGE}


def healthcheck_command(service: dict) -> list[str] | None:
    """The health check's argv (after "CMD"); None when the service disables it."""
    check = service.get("healthcheck", {})
    if check.get("disable"):
        return None
    kind, *argv = check["test"]
    assert kind == "CMD", f"{check['test']}: exec form, so the argv can be checked"
    return argv


def interpolated(value: str) -> str:
    """A compose value with `${NAME:-default}` read as its default."""
    return re.sub(r"\$\{\w+:-([^}]*)\}", lambda m: m[1], str(value))


def service_environment(service: dict) -> dict[str, str]:
    """What a service's container gets: its `env_file`s (dotenv format), then its `environment`."""
    from dotenv import dotenv_values

    found: dict[str, str] = {}
    for path in service.get("env_file", []):
        found.update({k: v for k, v in dotenv_values(ROOT / interpolated(path)).items() if v is not None})
    found.update({k: interpolated(v) for k, v in service.get("environment", {}).items() if v is not None})
    return found


def dockerfile_environment() -> dict[str, str]:
    """The `ENV` the image sets (one NAME=value per line, as the Dockerfile writes them)."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    return dict(pair.split("=", 1) for line in text.splitlines() if line.startswith("ENV ")
                for pair in line.split()[1:])


def test_compose_file_is_valid() -> None:
    if shutil.which("docker-compose") is None:
        service_missing("docker-compose", FileNotFoundError("not installed; apt-get install docker-compose"))
    result = subprocess.run(["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_with_rabbitmq_every_service_that_sends_uses_it_and_waits_for_it() -> None:
    if shutil.which("docker-compose") is None:
        service_missing("docker-compose", FileNotFoundError("not installed; apt-get install docker-compose"))
    result = subprocess.run(["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "-f",
                             str(ROOT / "docker" / "rabbitmq.yml"), "config"],
                            capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    for name in ("worker", "tick", "admin", "api"):
        assert services[name]["environment"]["REDIS_URL"].startswith("amqp://herald:herald@rabbitmq:"), name
        assert services[name]["depends_on"]["rabbitmq"] == {"condition": "service_healthy"}, name
        assert services[name]["environment"]["DATABASE_URL"] == "postgresql://herald:herald@db:5432/herald"
    assert services["rabbitmq"]["healthcheck"]["test"]


def test_the_stack_runs_beside_a_local_postgresql_and_redis_and_reads_its_settings_file() -> None:
    services = compose_file()["services"]
    published = {name: [interpolated(p) for p in services[name]["ports"]] for name in ("db", "redis")}
    assert published == {"db": ["127.0.0.1:5433:5432"], "redis": ["127.0.0.1:6380:6379"]}
    for name in ("migrate", "seed", "worker", "tick", "admin", "api", "exporter"):
        env = service_environment(services[name])
        assert env["MAIL_SMTP_HOST"] == "mailpit" and env["MAIL_SMTP_PORT"] == "1025", name
        assert env["REDIS_URL"] == "redis://redis:6379/0", name


def test_the_demo_tenant_role_made_by_the_compose_init_script_can_only_read(pg_admin: str) -> None:
    # The script docker-compose runs on a fresh PostgreSQL, run here by psql as the
    # container's entrypoint would (names made unique, so a local cluster is untouched).
    suffix = uuid.uuid4().hex[:8]
    role, database = f"demo_reader_{suffix}", f"demo_data_{suffix}"
    script = (ROOT / "docker" / "postgres-init" / "10-tenant-reader.sql").read_text()
    script = script.replace("demo_reader", role).replace("demo_data", database)
    if shutil.which("psql") is None:
        service_missing("psql", FileNotFoundError("apt-get install postgresql-client"))
    try:
        result = subprocess.run(["psql", "-v", "ON_ERROR_STOP=1", "-q", pg_admin], input=script,
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        admin = make_url(sqlalchemy_url(pg_admin)).set(database=database)
        with psycopg.connect(admin.set(drivername="postgresql").render_as_string(hide_password=False),
                             autocommit=True) as conn:
            conn.execute("CREATE TABLE videos AS SELECT 1 AS views")
        reader = admin.set(username=role, password=role).render_as_string(hide_password=False)
        check_datasource(reader)  # not a superuser, no server-file roles
        with open_source(reader, 5) as source:
            assert source.query("SELECT views FROM videos", {}, cap=1, where="check").rows == [[1]]
            with pytest.raises(QueryError, match="is a DELETE statement, not a query"):
                source.query("DELETE FROM videos", {}, cap=1, where="check")
    finally:
        with psycopg.connect(pg_admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            conn.execute(f'DROP ROLE IF EXISTS "{role}"')


def test_every_service_has_a_health_check_or_is_a_one_shot_the_others_wait_for() -> None:
    services = compose_file()["services"]
    awaited = {name for service in services.values()
               for name, dependency in service.get("depends_on", {}).items()
               if dependency["condition"] == "service_completed_successfully"}
    for name, service in services.items():
        if name in awaited:
            assert "restart" not in service and service["healthcheck"] == {"disable": True}, name
        else:
            assert service["healthcheck"]["test"], name
    assert awaited == {"migrate", "seed"}


def test_workers_restart_and_scale_without_fixed_names_or_host_ports() -> None:
    worker = compose_file()["services"]["worker"]
    assert worker["restart"] == "unless-stopped"
    assert "container_name" not in worker and "ports" not in worker


def _check_herald_command(argv: list[str]) -> None:
    """`herald SUB... --help` answers with that sub-command's usage, naming every option used."""
    words = [arg for arg in argv[1:] if not arg.startswith("-")]
    subcommand = words[:2] if argv[1] in {"db", "tenant", "report", "schedule", "user", "cron"} else words[:1]
    result = CliRunner().invoke(app, [*argv[1:], "--help"], catch_exceptions=False)
    assert result.exit_code == 0, (argv, result.output)
    assert f"Usage: herald {' '.join(subcommand)} " in result.output, (argv, result.output)
    for option in (arg for arg in argv if arg.startswith("--")):
        assert option in result.output, (argv, option)


def test_every_command_the_compose_file_runs_exists_in_the_installed_herald(
    tmp_path: Path, sqlite_template: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `herald` checks the schema before any sub-command, even for --help
    shutil.copy(sqlite_template, tmp_path / "herald.db")
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'herald.db'}")
    get_settings.cache_clear()
    commands = []
    for service in herald_services().values():
        commands.append(service["command"])
        check = healthcheck_command(service)
        if check is not None:
            commands.append(check)
    assert {c[0] for c in commands} == {"herald", "dramatiq", "periodiq", "python"}
    for argv in commands:
        if argv[0] == "herald":
            _check_herald_command(argv)
        elif argv[0] == "dramatiq":  # the worker: its options, and the module with the actors
            args = make_argument_parser().parse_args(argv[1:])
            declared = _actors_after_import(args.broker, *args.modules)
            assert {"tick_actor", "query_stage", "render_stage", "deliver_stage"} <= set(declared)
        elif argv[0] == "periodiq":  # the tick: its options, and a periodic actor to send
            args = periodiq.make_argument_parser().parse_args(argv[1:])
            declared = _actors_after_import(args.broker, *args.modules)
            assert declared.get("tick_actor") is True
        else:  # the health checks' Python one-liners (tests/test_stack.py runs them)
            assert argv[1] == "-c"
            compile(argv[2], "<healthcheck>", "exec")
    get_settings.cache_clear()


def _actors_after_import(*modules: str) -> dict[str, bool]:
    """The actors declared once the modules are imported as the worker commands import them
    (`dramatiq.cli.import_object`, in a new process): {name: whether it is periodic}."""
    script = ("import json, sys, dramatiq; from dramatiq.cli import import_object\n"
              "for module in sys.argv[1:]: import_object(module)\n"
              "print(json.dumps({n: 'periodic' in a.options for n, a in dramatiq.get_broker().actors.items()}))")
    done = subprocess.run([sys.executable, "-c", script, *modules], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_image_prints_with_the_system_chromium_it_installs() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "FROM python:3.11-slim" in dockerfile
    for package in ("chromium", "fonts-dejavu-core", "fonts-symbola", "poppler-utils"):
        assert f" {package}" in dockerfile
    assert dockerfile_environment()["HERALD_CHROMIUM_PATH"] == "/usr/bin/chromium"
    assert re.search(r"^USER (?!root)\w+", dockerfile, re.MULTILINE)  # not root


def test_the_image_holds_every_package_herald_installs_and_runs_unprivileged() -> None:
    import tomllib

    dockerfile = (ROOT / "Dockerfile").read_text()
    included = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"]["find"]["include"]
    copied = set(re.findall(r"^COPY (\w+) \1$", dockerfile, flags=re.MULTILINE))
    assert copied == {pattern.rstrip("*") for pattern in included}
    users = re.findall(r"^USER (\S+)$", dockerfile, flags=re.MULTILINE)
    assert users and users[-1] not in ("root", "0")


def test_the_api_service_serves_on_all_interfaces_of_its_container_only() -> None:
    api = compose_file()["services"]["api"]
    assert api["command"][:2] == ["herald", "api"] and "--host" in api["command"]
    assert api["ports"] == ["127.0.0.1:8000:8000"]   # published on the host's loopback
    assert "/readyz" in " ".join(healthcheck_command(api))
