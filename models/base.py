"""Shared column helpers and the metadata naming convention for all tables."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from models.db import UTCDateTime, utcnow

# Named constraints keep Alembic's SQLite batch migrations and autogenerate stable.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Channel(StrEnum):
    """Delivery channels; `delivery.CHANNELS` maps each to its implementation."""

    EMAIL = "email"
    TELEGRAM = "telegram"


class Format(StrEnum):
    """Document formats; `renderers.RENDERERS` maps each to its implementation."""

    PDF = "pdf"
    CSV = "csv"
    XLSX = "xlsx"


def timestamp(*, index: bool = False, nullable: bool = True, **kwargs: Any) -> Any:
    """An aware UTC timestamp column."""
    return Field(default=None, sa_type=UTCDateTime, index=index, nullable=nullable, **kwargs)


def created_at() -> Any:
    return Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


def json_column(default_factory: Any) -> Any:
    return Field(default_factory=default_factory, sa_type=sa.JSON, nullable=False)


def parent(target: str, *, nullable: bool = False, index: bool = True) -> Any:
    """An indexed foreign key whose rows go when the parent row goes. `index=False` where a
    unique or composite index already leads with this column: a second index would only
    cost every insert a write."""
    return Field(default=None, foreign_key=target, ondelete="CASCADE", index=index,
                 nullable=nullable)


__all__ = ["Channel", "Format", "SQLModel", "created_at", "datetime", "json_column",
           "parent", "timestamp"]
