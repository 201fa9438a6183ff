"""Tenant databases to attack: the same table on PostgreSQL and on SQLite.

On PostgreSQL the data source's role may write `t` (it is granted ALL), so what
stops a write in these tests is herald's boundary, not a missing privilege.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from models.definition import parse_definition
from pipeline.query import query_sections


@dataclass(frozen=True)
class Source:
    url: str
    admin_url: str | None
    directory: Path

    @property
    def backend(self) -> str:
        return "postgresql" if self.url.startswith("postgresql") else "sqlite"


def admin(source: Source) -> psycopg.Connection:
    return psycopg.connect(source.admin_url.replace("+psycopg", ""), autocommit=True)


@pytest.fixture(scope="module")
def pg_source(create_tenant_database, tmp_path_factory: pytest.TempPathFactory) -> Source:
    """One database per module: no attempt may change it, and each test checks that."""
    tmp_path = tmp_path_factory.mktemp("pg-source")
    db = create_tenant_database()
    with psycopg.connect(db.admin_url.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute("CREATE TABLE t (v INTEGER)")
        conn.execute("INSERT INTO t VALUES (1), (2), (3)")
        conn.execute("CREATE SEQUENCE s")
        conn.execute("""CREATE PROCEDURE purge() LANGUAGE plpgsql AS $$
                        BEGIN DELETE FROM t; COMMIT; END $$""")
        conn.execute(f'GRANT ALL ON t TO "{db.role}"')
        conn.execute(f'GRANT ALL ON SEQUENCE s TO "{db.role}"')
        conn.execute(f'GRANT CREATE ON SCHEMA public TO "{db.role}"')
    return Source(url=db.url, admin_url=db.admin_url, directory=tmp_path)


@pytest.fixture
def sqlite_source(tmp_path: Path) -> Source:
    path = tmp_path / "tenant.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (v INTEGER)")
        conn.executemany("INSERT INTO t VALUES (?)", [(1,), (2,), (3,)])
    conn.close()
    return Source(url=f"sqlite:///{path}", admin_url=None, directory=tmp_path)


@pytest.fixture(params=["postgresql", "sqlite"])
def source(request: pytest.FixtureRequest) -> Source:
    return request.getfixturevalue(f"{'pg' if request.param == 'postgresql' else 'sqlite'}_source")


def report(*sqls: str, params: dict | None = None):
    return parse_definition({
        "slug": "r", "title": "R", "params": params or {},
        "sections": [{"kind": "table", "title": f"S{i}", "sql": sql} for i, sql in enumerate(sqls)]})


def values(source: Source) -> list[int]:
    """What `t` holds, read through herald itself."""
    [table] = query_sections(source.url, report("SELECT v FROM t ORDER BY v"), {})
    return [row[0] for row in table["rows"]]
