"""Artifacts: rendered documents and query results, stored where every worker reads them.

Content is written and read in chunks of at most 1 MiB, so a large CSV moves
through the control database with constant memory.
"""

from __future__ import annotations

import atexit
import collections
import hashlib
import itertools
import shutil
import tempfile
import threading
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
                   rows: int | None = None, replace: bool = True) -> Artifact:
    """Keep `source` until the retention period ends; replaces the run's earlier one of that
    kind (`replace=False`: the caller knows there is none). Content that fits one chunk is
    written in two statements, the artifact with its checksum and the chunk."""
    if run_id is not None and replace:
        session.execute(sa.delete(Artifact).where(Artifact.run_id == run_id, Artifact.kind == kind))
    first = source if isinstance(source, bytes) else source.read(CHUNK_SIZE)
    whole = isinstance(source, bytes) or len(first) < CHUNK_SIZE
    values = dict(run_id=run_id, kind=kind, filename=filename, media_type=media_type,
                  size=len(first), checksum=hashlib.sha256(first).hexdigest() if whole else "",
                  created_at=now, rows=rows,
                  expires_at=now + timedelta(days=get_settings().artifact_retention_days))
    artifact = Artifact(id=session.execute(sa.insert(Artifact).values(**values)
                                           .returning(Artifact.id)).scalar_one(), **values)
    if whole:
        chunks = [first[i:i + CHUNK_SIZE] for i in range(0, len(first), CHUNK_SIZE)]
    else:
        chunks = itertools.chain([first], iter(lambda: source.read(CHUNK_SIZE), b""))
    digest, size = hashlib.sha256(), 0  # a stream's: the whole content's were taken above
    for seq, chunk in enumerate(chunks):
        session.execute(sa.insert(ArtifactChunk).values(artifact_id=artifact.id, seq=seq, data=chunk))
        if not whole:
            digest.update(chunk)
            size += len(chunk)
    if not whole:
        artifact.size, artifact.checksum = size, digest.hexdigest()
        session.execute(sa.update(Artifact).where(Artifact.id == artifact.id)
                        .values(size=size, checksum=artifact.checksum))
    return artifact


def store_artifact_file(session: Session, path: Path, **fields) -> Artifact:
    with path.open("rb") as source:
        return store_artifact(session, source=source, **fields)


def iter_content(session: Session, artifact: Artifact) -> Iterator[bytes]:
    """The artifact's bytes, one chunk at a time (another artifact's, when it shares them)."""
    holder = artifact.content_id or artifact.id
    for seq in range(-(-artifact.size // CHUNK_SIZE)):
        yield session.execute(
            sa.select(ArtifactChunk.data).where(ArtifactChunk.artifact_id == holder,
                                                ArtifactChunk.seq == seq)
        ).scalar_one()


def read_content(session: Session, artifact: Artifact) -> bytes:
    """The whole content; for small artifacts (query results, PDFs)."""
    return b"".join(iter_content(session, artifact))


def copy_content(session: Session, artifact: Artifact, target: BinaryIO) -> None:
    for chunk in iter_content(session, artifact):
        target.write(chunk)


# --- Local copies of shared bytes ------------------------------------------------------------
# Runs that share a render (`pipeline.sharing`) have artifacts naming the same bytes; a worker
# delivering many of them reads those bytes from the database once and keeps them on local
# disk for the next. An artifact's bytes never change (a new render is a new artifact), so a
# copy is keyed by its database and the id of the artifact holding them. Bounded; removed
# when the process ends.
LOCAL_COPIES = 64
_copies: collections.OrderedDict[tuple[str, int], Path] = collections.OrderedDict()
_copies_lock = threading.Lock()
_copies_dir: Path | None = None


def local_copy(session: Session, artifact: Artifact) -> Path:
    """A file on local disk with the artifact's bytes, shared with the other artifacts that name
    the same bytes; read only, and valid until LOCAL_COPIES other copies were made after it."""
    global _copies_dir
    holder = (str(session.get_bind().url), artifact.content_id or artifact.id)
    with _copies_lock:
        if holder in _copies:
            _copies.move_to_end(holder)
            return _copies[holder]
        if _copies_dir is None:
            _copies_dir = Path(tempfile.mkdtemp(prefix="herald-shared-"))
            atexit.register(shutil.rmtree, _copies_dir, True)
    name = hashlib.sha256(repr(holder).encode()).hexdigest()[:32]
    path = _copies_dir / f"{name}.part-{threading.get_ident()}"
    with path.open("wb") as target:
        copy_content(session, artifact, target)
    final = path.with_name(name)
    path.replace(final)
    with _copies_lock:
        _copies[holder] = final
        while len(_copies) > LOCAL_COPIES:
            _, gone = _copies.popitem(last=False)
            gone.unlink(missing_ok=True)
    return final


def forget_local_copies() -> None:
    """Drop the local copies (a database whose ids started over: tests)."""
    with _copies_lock:
        while _copies:
            _copies.popitem()[1].unlink(missing_ok=True)


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
