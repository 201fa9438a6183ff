"""Artifacts: rendered documents and query results, stored where every worker reads them.

Content is written and read in chunks of at most 1 MiB, so a large CSV moves
through the control database with constant memory.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import BinaryIO

import sqlalchemy as sa
from sqlmodel import Session, select

from models.runs import Artifact, ArtifactChunk
from models.settings import get_settings

CHUNK_SIZE = 1024 * 1024
QUERY_RESULT = "query-result"  # the query stage's rows, read by the render and deliver stages


def store_artifact(session: Session, *, run_id: int | None, kind: str, filename: str,
                   media_type: str, source: bytes | BinaryIO, now: datetime,
                   rows: int | None = None) -> Artifact:
    """Keep `source` until the retention period ends; replaces the run's earlier one of that kind."""
    if run_id is not None:
        session.execute(sa.delete(Artifact).where(Artifact.run_id == run_id, Artifact.kind == kind))
    artifact = Artifact(run_id=run_id, kind=kind, filename=filename, media_type=media_type,
                        size=0, checksum="", created_at=now, rows=rows,
                        expires_at=now + timedelta(days=get_settings().artifact_retention_days))
    session.add(artifact)
    session.flush()
    digest, size, seq = hashlib.sha256(), 0, 0
    chunks = ([source[i:i + CHUNK_SIZE] for i in range(0, len(source), CHUNK_SIZE)]
              if isinstance(source, bytes) else iter(lambda: source.read(CHUNK_SIZE), b""))
    for chunk in chunks:
        session.execute(sa.insert(ArtifactChunk).values(artifact_id=artifact.id, seq=seq, data=chunk))
        digest.update(chunk)
        size, seq = size + len(chunk), seq + 1
    artifact.size, artifact.checksum = size, digest.hexdigest()
    session.flush()
    return artifact


def store_artifact_file(session: Session, path: Path, **fields) -> Artifact:
    with path.open("rb") as source:
        return store_artifact(session, source=source, **fields)


def iter_content(session: Session, artifact_id: int) -> Iterator[bytes]:
    """The artifact's bytes, one chunk at a time."""
    seq = 0
    while True:
        chunk = session.execute(
            sa.select(ArtifactChunk.data).where(ArtifactChunk.artifact_id == artifact_id,
                                                ArtifactChunk.seq == seq)
        ).scalar_one_or_none()
        if chunk is None:
            return
        yield chunk
        seq += 1


def read_content(session: Session, artifact_id: int) -> bytes:
    """The whole content; for small artifacts (query results, PDFs)."""
    return b"".join(iter_content(session, artifact_id))


def copy_content(session: Session, artifact_id: int, target: BinaryIO) -> None:
    for chunk in iter_content(session, artifact_id):
        target.write(chunk)


def run_artifact(session: Session, run_id: int, kind: str) -> Artifact | None:
    return session.exec(
        select(Artifact).where(Artifact.run_id == run_id, Artifact.kind == kind)
    ).first()


def purge_expired(session: Session, now: datetime) -> int:
    """Delete artifacts past their expiry (their chunks go with them); returns how many went."""
    expired = select(Artifact.id).where(Artifact.expires_at < now)
    session.execute(sa.delete(ArtifactChunk).where(ArtifactChunk.artifact_id.in_(expired)))
    result = session.execute(sa.delete(Artifact).where(Artifact.expires_at < now))
    return result.rowcount or 0


__all__ = ["CHUNK_SIZE", "copy_content", "iter_content", "purge_expired", "read_content",
           "run_artifact", "store_artifact", "store_artifact_file"]
