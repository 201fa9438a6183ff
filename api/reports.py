"""`/api/v1/reports`: list, read, save (YAML or JSON), export as PDF, CSV or XLSX (streamed),
refresh the views."""

from __future__ import annotations

import threading
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from api.auth import COMMITTED, needs
from api.streaming import Download
from models.db import session_scope, utcnow
from models.definition import parse_definition_text
from models.errors import InvalidInput
from models.settings import get_settings
from models.tokens import Scope
from services import documents, reports
from services.access import ApiClient

router = APIRouter(prefix="/reports", tags=["reports"])
READ, WRITE = needs(Scope.REPORTS_READ), needs(Scope.REPORTS_WRITE)
EXPORT_OPTIONS = {"format", "period_start", "period_end"}
_exports = threading.BoundedSemaphore(1)  # replaced by `limit_exports` at start


def limit_exports(count: int) -> None:
    """At most `count` exports at once in this process (HERALD_API_MAX_EXPORTS)."""
    global _exports
    _exports = threading.BoundedSemaphore(count)


@router.get("", summary="The tenant's reports")
def list_reports(caller: ApiClient = Depends(READ),
                 session: Session = COMMITTED) -> list[dict[str, Any]]:
    return [{"id": r.id, "slug": r.slug, "title": r.title, "sections": r.sections,
             "formats": list(r.formats), "updated_at": r.updated_at.isoformat()}
            for r in reports.list_reports(session, caller, caller.tenant_id)]


@router.get("/{slug}", summary="One report: its definition, as data and as YAML")
def get_report(slug: str, caller: ApiClient = Depends(READ),
               session: Session = COMMITTED) -> dict[str, Any]:
    return reports.report_detail(session, caller, caller.tenant_id, slug)


@router.put("/{slug}", summary="Create or replace the report `slug` from YAML or JSON",
            openapi_extra={"requestBody": {"content": {
                "application/yaml": {"schema": {"type": "string"}},
                "application/json": {"schema": {"type": "object"}}}, "required": True}})
async def save_report(slug: str, request: Request, caller: ApiClient = Depends(WRITE)) -> JSONResponse:
    text = (await request.body()).decode("utf-8-sig", errors="replace")
    if not text.strip():
        raise InvalidInput("The body is empty; send the report's YAML (or JSON) definition.")
    # Off the event loop: parsing takes up to a second (a body is at most a report file's
    # `models.report_file.MAX_BYTES`), and the save asks the tenant's database.
    detail, created = await run_in_threadpool(_save, caller, slug, text)
    return JSONResponse(detail, status_code=201 if created else 200,
                        headers={"Location": f"/api/v1/reports/{slug}"})


def _save(caller: ApiClient, slug: str, text: str) -> tuple[dict[str, Any], bool]:
    definition = parse_definition_text(text, "body")
    if definition.slug != slug:
        raise InvalidInput(f"body: slug is {definition.slug!r} but the URL names {slug!r}; make them "
                           f"the same.")
    with session_scope() as session:
        saved = reports.save_report_text(session, caller, caller.tenant_id, text, source="body")
        return reports.report_detail(session, caller, caller.tenant_id, saved.slug), saved.created


@router.post("/{slug}/refresh", summary="Refresh the report's materialized views now")
def refresh(slug: str, caller: ApiClient = Depends(WRITE),
            session: Session = COMMITTED) -> dict[str, Any]:
    return {"refreshed": reports.refresh_report_views(session, caller, caller.tenant_id, slug)}


@router.get("/{slug}/export", summary="The report as a PDF, CSV or XLSX, made now and streamed",
            response_class=Download, status_code=200,
            responses={200: {"content": {"application/pdf": {}, "text/csv": {}}}})
def export(request: Request, slug: str,
           format: str = Query(..., description="pdf, csv or xlsx"),  # noqa: A002
           period_start: str | None = Query(None, description="ISO date or time (the tenant's zone)"),
           period_end: str | None = Query(None, description="exclusive; with period_start"),
           caller: ApiClient = Depends(READ)) -> Download:
    """Any other query parameter is one of the report's parameters (`?campaign=Campaign%20B`)."""
    params = {k: v for k, v in request.query_params.items() if k not in EXPORT_OPTIONS}
    bounds = documents.period_bounds(period_start, period_end)
    if not _exports.acquire(blocking=False):
        raise HTTPException(429, f"{get_settings().api_max_exports} exports are running in this API "
                                 f"process, the most it runs at once; try again in a few seconds.",
                            headers={"Retry-After": "5"})
    try:
        with session_scope() as session:
            streamed = documents.export_streamed(session, caller, caller.tenant_id, slug, format,
                                                 now=utcnow(), bounds=bounds, params=params)
    except BaseException:
        _exports.release()
        raise

    return Download(streamed.chunks, filename=streamed.filename, media_type=streamed.media_type,
                    done=_exports.release)
