"""Artifacts: rendered documents and query results, stored where every worker reads them."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Session, select

from models.runs import Artifact
from models.settings import get_settings


def store_artifact(session: Session, *, run_id: int | None, kind: str, filename: str,
                   media_type: str, content: bytes, now: datetime) -> Artifact:
    """Keep `content` until the retention period ends; replaces the run's earlier one of that kind."""
    if run_id is not None:
        session.execute(sa.delete(Artifact).where(Artifact.run_id == run_id, Artifact.kind == kind))
    artifact = Artifact(
        run_id=run_id, kind=kind, filename=filename, media_type=media_type, size=len(content),
        checksum=hashlib.sha256(content).hexdigest(), content=content, created_at=now,
        expires_at=now + timedelta(days=get_settings().artifact_retention_days),
    )
    session.add(artifact)
    session.flush()
    return artifact


def run_artifact(session: Session, run_id: int, kind: str) -> Artifact | None:
    return session.exec(
        select(Artifact).where(Artifact.run_id == run_id, Artifact.kind == kind)
    ).first()


def purge_expired(session: Session, now: datetime) -> int:
    """Delete artifacts past their expiry; returns how many went."""
    result = session.execute(sa.delete(Artifact).where(Artifact.expires_at < now))
    return result.rowcount or 0
