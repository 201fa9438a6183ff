"""Runs (the outbox: one per schedule slot), deliveries (one per recipient) and artifacts.

State changes go through `transition()`, which refuses moves the state machine
does not allow, so a redelivered message cannot take a finished row backwards.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from models.base import Channel, created_at, json_column, parent, timestamp
from models.db import RedactedText
from models.errors import InvalidTransition


class RunStatus(StrEnum):
    QUEUED = "queued"        # claimed by a tick, message sent to the query stage
    RUNNING = "running"      # a worker holds the lease
    SUCCESS = "success"      # every delivery sent
    PARTIAL = "partial"      # some deliveries sent, some failed
    FAILED = "failed"        # nothing sent: query/render failed or every delivery failed
    MISSED = "missed"        # the slot was older than the misfire grace when claimed


class DeliveryStatus(StrEnum):
    PENDING = "pending"      # written before the send
    SENT = "sent"
    FAILED = "failed"        # permanent error, or retries exhausted


FINAL_RUN_STATES = frozenset({RunStatus.SUCCESS, RunStatus.PARTIAL, RunStatus.FAILED,
                              RunStatus.MISSED})

RUN_MOVES: dict[RunStatus, frozenset[RunStatus]] = {
    RunStatus.QUEUED: frozenset({RunStatus.RUNNING, RunStatus.FAILED}),
    # RUNNING -> QUEUED: the tick re-enqueues a run whose worker lease expired.
    RunStatus.RUNNING: frozenset({RunStatus.QUEUED, *FINAL_RUN_STATES} - {RunStatus.MISSED}),
    # PARTIAL/FAILED -> QUEUED: "resend failed" (admin history) sends the failed deliveries again.
    RunStatus.PARTIAL: frozenset({RunStatus.QUEUED}),
    RunStatus.FAILED: frozenset({RunStatus.QUEUED}),
}
DELIVERY_MOVES: dict[DeliveryStatus, frozenset[DeliveryStatus]] = {
    DeliveryStatus.PENDING: frozenset({DeliveryStatus.SENT, DeliveryStatus.FAILED}),
}


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
    schedule_id: int = parent("schedule.id")
    tenant_id: int = parent("tenant.id")
    scheduled_for: datetime = timestamp(nullable=False)
    manual: bool = Field(default=False)
    # A test send ("send a test to…"): to `test_recipients` only, never mirrored on the schedule.
    test: bool = Field(default=False)
    test_recipients: list[list[str]] | None = Field(default=None, sa_type=sa.JSON)
    requested_by: str | None = Field(default=None, max_length=320)  # who pressed send now / test
    status: RunStatus = Field(default=RunStatus.QUEUED, sa_type=sa.String(16))
    queued_at: datetime | None = timestamp()
    started_at: datetime | None = timestamp()
    finished_at: datetime | None = timestamp()
    lease_expires_at: datetime | None = timestamp()
    attempts: int = Field(default=0)
    error: str | None = Field(default=None, sa_type=RedactedText)
    created_at: datetime = created_at()


class Delivery(SQLModel, table=True):
    """One message to one recipient on one channel, written before the send."""

    __table_args__ = (sa.UniqueConstraint("run_id", "channel", "recipient"),)

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = parent("report_run.id")
    channel: Channel = Field(sa_type=sa.String(16))
    recipient: str = Field(max_length=320)
    status: DeliveryStatus = Field(default=DeliveryStatus.PENDING, sa_type=sa.String(16))
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
    written and read with constant memory.
    """

    id: int | None = Field(default=None, primary_key=True)
    run_id: int | None = parent("report_run.id", nullable=True)
    kind: str = Field(max_length=32)
    filename: str = Field(max_length=300)
    media_type: str = Field(max_length=100)
    size: int = Field(sa_type=sa.BigInteger)
    rows: int | None = Field(default=None, sa_type=sa.BigInteger)  # CSV: data rows
    checksum: str = Field(max_length=64)
    created_at: datetime = created_at()
    expires_at: datetime | None = timestamp(index=True)


class ArtifactChunk(SQLModel, table=True):
    __tablename__ = "artifact_chunk"

    artifact_id: int = Field(foreign_key="artifact.id", ondelete="CASCADE", primary_key=True)
    seq: int = Field(primary_key=True)
    data: bytes = Field(sa_type=sa.LargeBinary)


def transition(row: ReportRun | Delivery, new: RunStatus | DeliveryStatus) -> None:
    """Move a run or delivery to `new`, refusing moves its state machine does not allow."""
    moves = RUN_MOVES if isinstance(row, ReportRun) else DELIVERY_MOVES
    current = type(new)(row.status)
    if new not in moves.get(current, frozenset()):
        raise InvalidTransition(
            f"{type(row).__name__} {row.id} cannot move from {current} to {new}."
        )
    row.status = new
