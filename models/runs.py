"""Runs (the outbox: one per schedule slot), deliveries (one per recipient) and artifacts.

A run is born QUEUED and a delivery PENDING (their columns' defaults, in Python and in the
database); every later status is a move made by `pipeline.lifecycle`, which holds the table of
allowed moves and announces each committed change.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from models.base import Channel, created_at, json_column, parent, timestamp
from models.db import RedactedText


class RunStatus(StrEnum):
    QUEUED = "queued"        # claimed by a tick, message sent to the query stage
    RUNNING = "running"      # a worker holds the lease
    SUCCESS = "success"      # every delivery sent
    PARTIAL = "partial"      # some deliveries sent, some failed
    FAILED = "failed"        # nothing sent: query/render failed or every delivery failed
    MISSED = "missed"        # the slot was older than the misfire grace when claimed
    SKIPPED = "skipped"      # the report's send_if was not met: nothing sent, the reason kept


class DeliveryStatus(StrEnum):
    PENDING = "pending"      # written before the send
    SENT = "sent"
    FAILED = "failed"        # permanent error, or retries exhausted


FINAL_RUN_STATES = frozenset({RunStatus.SUCCESS, RunStatus.PARTIAL, RunStatus.FAILED,
                              RunStatus.MISSED, RunStatus.SKIPPED})


class ReportRun(SQLModel, table=True):
    """One execution of a schedule for one slot; unique on (schedule, slot)."""

    __tablename__ = "report_run"
    __table_args__ = (
        sa.UniqueConstraint("schedule_id", "scheduled_for"),
        sa.Index("ix_report_run_status_lease", "status", "lease_expires_at"),
        # The history page: a tenant's runs newest first, paged by (scheduled_for, id).
        sa.Index("ix_report_run_tenant_slot", "tenant_id", "scheduled_for", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    schedule_id: int = parent("schedule.id", index=False)  # the unique key leads with it
    # The schedule's tenant, copied for the history page's index. No foreign key of its own:
    # run → schedule → tenant already cascades, and its check cost the tick a sixth of each
    # run it writes (docs/benchmarks.md, "The tick").
    tenant_id: int = Field(nullable=False)
    scheduled_for: datetime = timestamp(nullable=False)
    manual: bool = Field(default=False)
    # A test send ("send a test to…"): to `test_recipients` only, never mirrored on the schedule.
    test: bool = Field(default=False)
    test_recipients: list[list[str]] | None = Field(default=None, sa_type=sa.JSON)
    requested_by: str | None = Field(default=None, max_length=320)  # who pressed send now / test
    status: RunStatus = Field(default=RunStatus.QUEUED, sa_type=sa.String(16),
                              sa_column_kwargs={"server_default": RunStatus.QUEUED.value})
    queued_at: datetime | None = timestamp()
    started_at: datetime | None = timestamp()
    finished_at: datetime | None = timestamp()
    lease_expires_at: datetime | None = timestamp()
    attempts: int = Field(default=0)
    # The last error; for a SKIPPED run, the reason nothing was sent.
    error: str | None = Field(default=None, sa_type=RedactedText)
    created_at: datetime = created_at()


class Delivery(SQLModel, table=True):
    """One message to one recipient on one channel, written before the send."""

    __table_args__ = (sa.UniqueConstraint("run_id", "channel", "recipient"),)

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = parent("report_run.id", index=False)  # the unique key leads with it
    channel: Channel = Field(sa_type=sa.String(16))
    recipient: str = Field(max_length=320)
    status: DeliveryStatus = Field(default=DeliveryStatus.PENDING, sa_type=sa.String(16),
                                   sa_column_kwargs={"server_default": DeliveryStatus.PENDING.value})
    attempts: int = Field(default=0)
    provider_message_id: str | None = Field(default=None, max_length=300)
    # A worker holds a delivery while it sends; another may take it only after this passes.
    lease_expires_at: datetime | None = timestamp()
    # What already reached the recipient, by format (Telegram sends one document per format).
    parts: dict[str, str] = json_column(dict)
    error: str | None = Field(default=None, sa_type=RedactedText)
    created_at: datetime = created_at()
    started_at: datetime | None = timestamp()
    finished_at: datetime | None = timestamp()
    duration_ms: int | None = None


class Artifact(SQLModel, table=True):
    """A rendered document or query result, readable by every worker until it expires.

    The bytes live in `ArtifactChunk` rows of at most 1 MiB, so a large CSV is
    written and read with constant memory. A run that shared another's render
    (`pipeline.sharing`) has artifacts of its own whose bytes are the other's:
    `content_id` names the artifact that holds them (they expire together; a
    report's runs, which alone share, are deleted together).
    """

    id: int | None = Field(default=None, primary_key=True)
    run_id: int | None = parent("report_run.id", nullable=True)
    content_id: int | None = parent("artifact.id", nullable=True)
    kind: str = Field(max_length=32)
    filename: str = Field(max_length=300)
    media_type: str = Field(max_length=100)
    size: int = Field(sa_type=sa.BigInteger)
    rows: int | None = Field(default=None, sa_type=sa.BigInteger)  # CSV: data rows
    checksum: str = Field(max_length=64)
    created_at: datetime = created_at()
    expires_at: datetime | None = timestamp(index=True)


class ShareState(StrEnum):
    RENDERING = "rendering"  # its leader run is querying and rendering
    READY = "ready"          # the documents are the leader's artifacts
    SKIPPED = "skipped"      # send_if was not met: `error` says why
    FAILED = "failed"        # permanently (a query error): `error` says why
    RETRY = "retry"          # the leader's attempt failed (`error`); the next attempt leads


class RenderShare(SQLModel, table=True):
    """One render shared by the runs due in the same minute that make the same documents
    (`pipeline.sharing`): the first leads, the others wait for its outcome and reuse it."""

    __tablename__ = "render_share"

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=64, unique=True)  # sha256 of what the documents depend on
    tenant_id: int = parent("tenant.id")
    leader_run_id: int | None = Field(default=None, foreign_key="report_run.id", ondelete="SET NULL",
                                      nullable=True, index=True)
    state: ShareState = Field(default=ShareState.RENDERING, sa_type=sa.String(16))
    error: str | None = Field(default=None, sa_type=RedactedText)  # why skipped, failed, to retry
    created_at: datetime = created_at()
    finished_at: datetime | None = timestamp()


class ArtifactChunk(SQLModel, table=True):
    __tablename__ = "artifact_chunk"

    artifact_id: int = Field(foreign_key="artifact.id", ondelete="CASCADE", primary_key=True)
    seq: int = Field(primary_key=True)
    data: bytes = Field(sa_type=sa.LargeBinary)
