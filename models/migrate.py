"""Schema migrations (Alembic), run by `herald db upgrade` against `DATABASE_URL`."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config

from models.db import RedactedText, UTCDateTime
from models.settings import get_settings

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    # Alembic's ini interpolation treats % specially; URLs may hold %-escapes.
    config.set_main_option("sqlalchemy.url", (url or get_settings().database_url).replace("%", "%%"))
    return config


def upgrade(url: str | None = None, revision: str = "head") -> None:
    """Create or migrate herald's tables; a SQLite file is created, in a directory that exists."""
    from models.errors import HeraldError

    path = sqlite_file(url)
    if path is not None and not path.parent.is_dir():
        raise HeraldError(f"The directory {path.parent} of DATABASE_URL's SQLite file does not "
                          f"exist; create it, or correct DATABASE_URL.")
    command.upgrade(alembic_config(url), revision)


def current_revision(url: str | None = None) -> str | None:
    """The schema revision the database is at; None when it has no herald tables, or when it
    is a SQLite file that does not exist (which is not created)."""
    from alembic.runtime.migration import MigrationContext

    from models.db import get_engine

    path = sqlite_file(url)
    if path is not None and not path.exists():
        return None
    with get_engine(url).connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def sqlite_file(url: str | None = None) -> Path | None:
    """The file of a SQLite URL (None for other databases and SQLite in memory)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url or get_settings().database_url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def require_current(url: str | None = None) -> None:
    """Refuse, with what to run, a database whose schema is older (or newer) than this herald,
    or a SQLite file that does not exist (without creating it)."""
    from models.errors import HeraldError

    path = sqlite_file(url)
    if path is not None and not path.exists():
        raise HeraldError(f"There is no database at {path} (DATABASE_URL); run `herald db upgrade` "
                          f"to create one there, or correct DATABASE_URL.")
    found = current_revision(url)
    head = current_head()
    if found != head:
        where = "has no herald tables" if found is None else f"is at schema revision {found}"
        raise HeraldError(f"The database at DATABASE_URL {where}, and this herald needs {head}; "
                          f"run `herald db upgrade`.")


@functools.cache
def current_head() -> str:
    """The newest schema revision this herald knows (read once per process)."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def render_item(type_: str, obj: Any, autogen_context: Any) -> str | bool:
    """Render herald's column types by import path so generated migrations run."""
    if type_ == "type" and isinstance(obj, UTCDateTime):
        autogen_context.imports.add("import models.db")
        return "models.db.UTCDateTime()"
    if type_ == "type" and isinstance(obj, RedactedText):
        return "sa.Text()"  # redaction happens in Python; the column is plain TEXT
    return False
