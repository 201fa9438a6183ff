"""Saved reports: a tenant's validated report definition, stored as JSON."""

from __future__ import annotations

import functools
import json
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from models.base import created_at, json_column, parent, timestamp
from models.definition import ReportDefinition


class Report(SQLModel, table=True):
    """A report definition (see `models.definition`) owned by one tenant."""

    __table_args__ = (sa.UniqueConstraint("tenant_id", "slug"),)

    id: int | None = Field(default=None, primary_key=True)
    tenant_id: int = parent("tenant.id", index=False)  # the unique index leads with it
    slug: str = Field(max_length=64)
    title: str = Field(max_length=200)
    definition: dict[str, Any] = json_column(dict)
    created_at: datetime = created_at()
    updated_at: datetime | None = timestamp()

    def parsed(self) -> ReportDefinition:
        """The definition as typed objects (it was validated when written). Definitions are
        frozen: the last ones parsed are kept, as every run of a report parses it again."""
        return _parsed(json.dumps(self.definition, sort_keys=True, separators=(",", ":")))


@functools.lru_cache(maxsize=256)
def _parsed(definition: str) -> ReportDefinition:
    # Stored: written by an earlier herald, whose checks may have been looser than today's.
    return ReportDefinition.model_validate(json.loads(definition), context={"stored": True})
