"""`/api/v1/schedules`: create (with the CLI's names), list, read, change, delete, pause, resume,
send now and send a test. Every field is checked as the CLI and the admin check it."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import Session

from api.auth import COMMITTED, needs
from api.retries import KEY_HEADER, idempotent
from models.db import utcnow
from models.tenancy import Tenant
from models.tokens import Scope
from services import runs, schedules
from services.access import ApiClient
from services.idempotency import Answer
from services.schedule_form import schedule_form_defaults

router = APIRouter(prefix="/schedules", tags=["schedules"])
READ, WRITE = needs(Scope.SCHEDULES_READ), needs(Scope.SCHEDULES_WRITE)


class ScheduleIn(BaseModel):
    """A schedule's fields with the CLI's names; on a change, only the fields given change."""

    model_config = ConfigDict(extra="forbid")

    report: str | None = Field(None, description="The report's slug")
    cron: str | None = Field(None, description="Five-field cron expression, e.g. '30 9 * * 1-5'")
    cadence: str | None = Field(None, description="daily, weekly (Mondays) or monthly (the 1st), with at")
    at: str | None = Field(None, description="HH:MM, with cadence")
    timezone: str | None = Field(None, description="IANA timezone; default: the tenant's")
    formats: list[str] | None = Field(None, description="pdf, csv, xlsx")
    email: list[str] | None = None
    telegram: list[str] | None = Field(None, description="Telegram chat ids")
    channels: list[str] | None = Field(None, description="email, telegram; default: those of the recipients")
    subject: str | None = Field(None, description="{title} {date} {period} {tenant} are filled in")
    send_if: str | None = Field(None, description="always or rows; default: the report's")
    spread: int | None = Field(None, description="Seconds after each slot to spread runs over")
    params: dict[str, Any] | None = Field(None, description="The report's parameters")
    paused: bool | None = None


class TestIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: list[str] = []
    telegram: list[str] = []


def values_of(body: ScheduleIn, start: schedules.ScheduleValues) -> schedules.ScheduleValues:
    """`start` with the fields `body` gives; a cron given drops a cadence and its time, and the
    other way round (both given are refused, as the CLI refuses them)."""
    given = body.model_dump(exclude_unset=True)
    values = replace(start, **{name: given[key] for key, name in (
        ("report", "report"), ("timezone", "timezone"), ("subject", "subject"),
        ("send_if", "send_if"), ("spread", "spread_seconds"), ("paused", "paused")) if key in given})
    for key, name in (("formats", "formats"), ("email", "emails"), ("telegram", "chats"),
                      ("channels", "channels")):
        if key in given:
            values = replace(values, **{name: tuple(given[key] or ())})
    if "params" in given:
        values = replace(values, params=dict(given["params"] or {}))
    timing = {"cron", "cadence", "at"} & set(given)
    if timing == {"cron"}:
        values = replace(values, cron=given["cron"], cadence=None, time=None)
    elif timing and "cron" not in timing:
        values = replace(values, cadence=given.get("cadence", values.cadence),
                         time=given.get("at", values.time), cron=None)
    elif timing:  # both: refused as the CLI refuses them
        values = replace(values, cron=given["cron"], cadence=given.get("cadence", values.cadence),
                         time=given.get("at", values.time))
    return values


@router.get("", summary="The tenant's schedules")
def list_schedules(caller: ApiClient = Depends(READ),
                   session: Session = COMMITTED) -> list[dict[str, Any]]:
    return schedules.list_schedule_details(session, caller, session.get(Tenant, caller.tenant_id))


@router.post("", status_code=201, summary="Create a schedule")
def create(body: ScheduleIn, caller: ApiClient = Depends(WRITE),
           session: Session = COMMITTED) -> JSONResponse:
    values = values_of(body, schedules.ScheduleValues(report=None, formats=()))
    row = schedules.save_schedule(session, caller, caller.tenant_id, values, now=utcnow())
    return JSONResponse(schedules.schedule_details(session, caller, row.id), status_code=201,
                        headers={"Location": f"/api/v1/schedules/{row.id}"})


@router.get("/{schedule_id}", summary="One schedule")
def get(schedule_id: int, caller: ApiClient = Depends(READ),
        session: Session = COMMITTED) -> dict[str, Any]:
    return schedules.schedule_details(session, caller, schedule_id)


@router.patch("/{schedule_id}", summary="Change the fields given")
def change(schedule_id: int, body: ScheduleIn, caller: ApiClient = Depends(WRITE),
           session: Session = COMMITTED) -> dict[str, Any]:
    start = schedule_form_defaults(session, caller, caller.tenant_id, schedule_id).values
    schedules.save_schedule(session, caller, caller.tenant_id, values_of(body, start), now=utcnow(),
                            schedule_id=schedule_id)
    return schedules.schedule_details(session, caller, schedule_id)


@router.delete("/{schedule_id}", status_code=204, summary="Delete (its runs stay as history)")
def delete(schedule_id: int, caller: ApiClient = Depends(WRITE),
           session: Session = COMMITTED) -> Response:
    schedules.delete(session, caller, schedule_id, now=utcnow())
    return Response(status_code=204)


@router.post("/{schedule_id}/pause", summary="Stop it firing")
def pause(schedule_id: int, caller: ApiClient = Depends(WRITE),
          session: Session = COMMITTED) -> dict[str, Any]:
    schedules.pause(session, caller, schedule_id, now=utcnow())
    return schedules.schedule_details(session, caller, schedule_id)


@router.post("/{schedule_id}/resume", summary="Fire again from its next slot")
def resume(schedule_id: int, caller: ApiClient = Depends(WRITE),
           session: Session = COMMITTED) -> dict[str, Any]:
    schedules.resume(session, caller, schedule_id, now=utcnow())
    return schedules.schedule_details(session, caller, schedule_id)


@router.post("/{schedule_id}/send", status_code=202, summary="Send now, to its recipients")
def send_now(request: Request, schedule_id: int, caller: ApiClient = Depends(WRITE),
             session: Session = COMMITTED, key: str | None = KEY_HEADER) -> JSONResponse:
    return idempotent(request, caller, session, key, None, lambda: _sent(
        runs.send_now(session, caller, schedule_id, now=utcnow())))


@router.post("/{schedule_id}/test", status_code=202, summary="Send a test, to these only")
def send_test(request: Request, schedule_id: int, body: TestIn, caller: ApiClient = Depends(WRITE),
              session: Session = COMMITTED, key: str | None = KEY_HEADER) -> JSONResponse:
    return idempotent(request, caller, session, key, body.model_dump(), lambda: _sent(
        runs.send_test(session, caller, schedule_id, now=utcnow(), emails=body.email,
                       chats=body.telegram)))


def _sent(sent: runs.SentRun) -> Answer:
    return Answer(202, {"run_id": sent.run_id, "schedule_id": sent.schedule_id,
                          "status": sent.status, "test": sent.test},
                    location=f"/api/v1/runs/{sent.run_id}")
