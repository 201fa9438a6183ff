"""docker-compose.yml stays valid (checked without a Docker engine), and its database init
script gives the demo tenant a role herald accepts."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from models.errors import QueryError
from tenantdb import check_datasource, open_source
from tests.conftest import service_missing, sqlalchemy_url

ROOT = Path(__file__).parents[1]


def test_compose_file_is_valid() -> None:
    if shutil.which("docker-compose") is None:
        service_missing("docker-compose", FileNotFoundError("not installed; apt-get install docker-compose"))
    result = subprocess.run(["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


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
