"""`/api/v1/runs`: the tenant's runs (filters, keyset pages: the thousandth page costs what the
first does), one run with its deliveries and attempts, and resending its failed deliveries."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from sqlmodel import Session

from api.auth import COMMITTED, needs
from api.retries import KEY_HEADER, idempotent
from models.db import utcnow
from models.errors import InvalidInput
from models.tokens import Scope
from services import history, runs
from services.access import ApiClient
from services.history_records import RunCursor, RunFilters
from services.idempotency import Answer

router = APIRouter(prefix="/runs", tags=["runs"])
READ, WRITE = needs(Scope.SCHEDULES_READ), needs(Scope.SCHEDULES_WRITE)


@router.get("", summary="The tenant's runs, newest first, a page at a time")
def list_runs(
    schedule: int | None = None, report: str | None = Query(None, description="report slug"),
    status: str | None = None, kind: str | None = Query(None, description="scheduled, manual or test"),
    channel: str | None = None, recipient: str | None = Query(None, description="part of an address"),
    since: datetime | None = Query(None, description="slots from (inclusive)"),
    until: datetime | None = Query(None, description="slots before (exclusive)"),
    cursor: str | None = Query(None, description="`next` of the previous page"),
    limit: int = Query(50, ge=1, le=500),
    caller: ApiClient = Depends(READ), session: Session = COMMITTED,
) -> dict[str, Any]:
    filters = RunFilters(schedule_id=schedule, report=report, status=status, channel=channel,
                         recipient=recipient, start=since, end=until, kind=kind)
    page = history.runs_page(session, caller, caller.tenant_id, filters, after=_decode(cursor),
                             limit=limit)
    return {"runs": [{**row._asdict(), "scheduled_for": row.scheduled_for.isoformat()}
                     for row in page.rows],
            "next": _encode(page.next_cursor) if page.next_cursor else None}


@router.get("/{run_id}", summary="One run: its times, attempts, error and each delivery")
def get(run_id: int, caller: ApiClient = Depends(READ),
        session: Session = COMMITTED) -> dict[str, Any]:
    story = history.run_story(session, caller, run_id, now=utcnow())
    iso = lambda v: v.isoformat() if v else None  # noqa: E731
    return {"id": story.id, "schedule_id": story.schedule_id, "report_title": story.report_title,
            "scheduled_for": iso(story.scheduled_for), "status": story.status,
            "queued_at": iso(story.queued_at), "started_at": iso(story.started_at),
            "finished_at": iso(story.finished_at), "attempts": story.attempts, "error": story.error,
            "manual": story.manual, "test": story.test, "requested_by": story.requested_by,
            "deliveries": [d.__dict__ for d in story.deliveries],
            "documents": [{**d.__dict__, "expires_at": iso(d.expires_at)} for d in story.documents]}


@router.post("/{run_id}/resend", status_code=202, summary="Send its failed deliveries again")
def resend(request: Request, run_id: int, caller: ApiClient = Depends(WRITE),
           session: Session = COMMITTED, key: str | None = KEY_HEADER) -> JSONResponse:
    def send() -> Answer:
        result = runs.resend_failed(session, caller, run_id, now=utcnow())
        return Answer(202, {"run_id": result.run_id, "status": result.status,
                              "resent": [{"channel": c, "recipient": r} for c, r in result.resent]},
                        location=f"/api/v1/runs/{run_id}")

    return idempotent(request, caller, session, key, None, send)


def _encode(cursor: RunCursor) -> str:
    text = f"{cursor.scheduled_for.isoformat()}|{cursor.id}"
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _decode(text: str | None) -> RunCursor | None:
    if not text:
        return None
    try:
        slot, run_id = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode().split("|")
        return RunCursor(datetime.fromisoformat(slot), int(run_id))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidInput("cursor is not one herald gave; pass the `next` of the previous page, "
                           "or leave it out for the first page.") from None
