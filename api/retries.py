"""The `Idempotency-Key` header of the requests that send (send now, test send, resend): a retry
with the key of an earlier request gets that request's response again, marked
`Idempotent-Replayed: true`, and sends nothing (`services.idempotency`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import Header, Request
from fastapi.responses import JSONResponse
from sqlmodel import Session

from models.db import utcnow
from services import idempotency
from services.access import ApiClient
from services.idempotency import Answer

KEY_HEADER = Header(None, alias="Idempotency-Key", description=(
    "A new UUID per request: a retry with the same key gets the first response again and sends "
    "nothing. Keys are kept for 24 hours."))


def idempotent(request: Request, caller: ApiClient, session: Session, key: str | None, body: Any,
               send: Callable[[], Answer]) -> JSONResponse:
    """`send()` answered, once per key."""
    fingerprint = idempotency.fingerprint(request.method, request.url.path, body)
    response, replayed = idempotency.once(session, caller, key, fingerprint, utcnow(), send)
    headers = {"Location": response.location} if response.location else {}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return JSONResponse(response.body, status_code=response.status_code, headers=headers)
