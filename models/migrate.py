"""Schema migrations (Alembic), run by `herald db upgrade` against `DATABASE_URL`."""

from __future__ import annotations

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
    command.upgrade(alembic_config(url), revision)


def current_head() -> str:
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
