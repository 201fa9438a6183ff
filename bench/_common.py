"""What the benchmarks share: a throwaway PostgreSQL database and a free local port."""

from __future__ import annotations

import os
import socket
import uuid

import psycopg

PG_ADMIN = os.environ.get("HERALD_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def create_database() -> tuple[str, str]:
    """A new empty database: (its name, its SQLAlchemy URL)."""
    name = f"herald_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name, PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://") + "/" + name


def create_reader(name: str) -> str:
    """A login role that may only read database `name`, as herald requires of a tenant's data
    source; returns its SQLAlchemy URL. `drop_database` drops it too."""
    role = f"{name}_reader"
    admin = PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE \"{role}\" LOGIN PASSWORD '{role}'")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'GRANT CONNECT ON DATABASE "{name}" TO "{role}"')
        conn.execute(f'GRANT USAGE ON SCHEMA public TO "{role}"')
        conn.execute(f'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{role}"')
    host = admin.split("@", 1)[1]
    return f"postgresql+psycopg://{role}:{role}@{host}"


def drop_database(name: str) -> None:
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'DROP ROLE IF EXISTS "{name}_reader"')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
