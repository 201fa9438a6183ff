"""Safe retries of the requests that send (send now, test send, resend): the caller's
`Idempotency-Key` is taken in the same transaction that writes the run, so a retry with the
same key gets the first response back and sends nothing again.

Two requests with one key at once: the second waits on the first's row (the unique index)
until the first has committed its run, then reads "still under way" (Conflict). A request
that fails with one of herald's errors gives its key back, so the retry is a new attempt: the
services undo what such a failure wrote (a send-now the broker did not take leaves no run).
A request that dies otherwise keeps its key as under way until it is purged (`KEPT`): a retry
then cannot send a second time.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, select

from models.db import insert_ignoring_conflicts
from models.errors import Conflict, HeraldError, InvalidInput
from models.idempotency import KEPT, IdempotentRequest
from services.access import ApiClient

KEY = re.compile(r"[\x21-\x7e]{1,255}")   # visible ASCII, as a UUID or a ULID is


@dataclass(frozen=True)
class Answer:
    """What a sending request answered, as kept for its retries."""

    status_code: int
    body: dict[str, Any]
    location: str | None = None


def fingerprint(method: str, path: str, body: Any) -> str:
    """What makes two requests the same request: the method, the path and the body's JSON."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(f"{method} {path}\n{canonical}".encode()).hexdigest()


def once(session: Session, caller: ApiClient, key: str | None, request: str, now: datetime,
         send: Callable[[], Answer]) -> tuple[Answer, bool]:
    """`send()`'s response, or, when `key` was used before for the same `request` (its
    fingerprint), that first response. Returns it and whether it is a replay."""
    if key is None:
        return send(), False
    earlier = _claim(session, caller, key, request, now)
    if earlier is not None:
        return earlier, True
    try:
        response = send()   # commits the claim together with what it writes
    except HeraldError:
        session.rollback()
        session.execute(sa.delete(IdempotentRequest).where(*_this(caller, key)))
        session.commit()
        raise
    session.execute(sa.update(IdempotentRequest).where(*_this(caller, key)).values(
        status_code=response.status_code,
        response={"body": response.body, "location": response.location}))
    session.commit()
    return response, False


def _claim(session: Session, caller: ApiClient, key: str, request: str,
           now: datetime) -> Answer | None:
    if not KEY.fullmatch(key):
        raise InvalidInput("Idempotency-Key must be 1 to 255 visible ASCII characters; send a "
                           "new UUID for each new request.")
    taken = session.execute(
        insert_ignoring_conflicts(session, IdempotentRequest.__table__, "tenant_id", "caller", "key")
        .values(tenant_id=caller.tenant_id, caller=caller.actor, key=key, fingerprint=request,
                created_at=now).returning(IdempotentRequest.id)).first()
    if taken is not None:
        return None
    row = session.exec(select(IdempotentRequest).where(*_this(caller, key))).one()
    if row.created_at < now - KEPT:   # the tick has not purged it yet: the key is free again
        row.fingerprint, row.created_at, row.status_code, row.response = request, now, None, None
        session.add(row)
        session.flush()
        return None
    if row.fingerprint != request:
        raise InvalidInput(f"Idempotency-Key {key!r} was sent before with a different request; "
                           f"send a new key for a new request.")
    if row.status_code is None:
        raise Conflict(f"The request first sent with Idempotency-Key {key!r} has not finished "
                       f"(or stopped midway); retry in a moment, or look for its run under "
                       f"/api/v1/runs before sending with a new key.")
    return Answer(row.status_code, row.response["body"], row.response["location"])


def _this(caller: ApiClient, key: str) -> tuple[Any, ...]:
    return (IdempotentRequest.tenant_id == caller.tenant_id, IdempotentRequest.caller == caller.actor,
            IdempotentRequest.key == key)
