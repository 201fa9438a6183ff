"""Errors as RFC 9457 problem documents (`application/problem+json`): the status, its title,
and `detail`, the one sentence the CLI and the admin give for the same error (secrets masked)."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from models.errors import (
    BrokerUnavailable,
    Conflict,
    DataSourceUnreachable,
    HeraldError,
    InvalidInput,
    InvalidTransition,
    NotFound,
    PermissionDenied,
    QueryError,
    RenderError,
)
from models.redact import redact

MEDIA_TYPE = "application/problem+json"
STATUS: list[tuple[type[HeraldError], int]] = [
    (NotFound, 404), (PermissionDenied, 403), (InvalidInput, 422), (QueryError, 422),
    (Conflict, 409), (InvalidTransition, 409), (DataSourceUnreachable, 503), (RenderError, 503),
    (BrokerUnavailable, 503),
]


def problem(status: int, detail: str, headers: dict[str, str] | None = None,
            **extra: Any) -> JSONResponse:
    body = {"type": "about:blank", "title": HTTPStatus(status).phrase, "status": status,
            "detail": redact(detail), **extra}
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


def status_of(exc: HeraldError) -> int:
    return next((status for kind, status in STATUS if isinstance(exc, kind)), 400)


def field_sentence(error: dict[str, Any]) -> str:
    """FastAPI's first validation error as one sentence naming the field."""
    where = ".".join(str(part) for part in error.get("loc", ()) if part not in ("body", "query", "path"))
    message = str(error.get("msg", "is not valid")).rstrip(".")
    if error.get("type") == "extra_forbidden":
        return f"{where} is not a field herald knows; leave it out."
    if error.get("type") == "missing":
        return f"{where} is required; give it."
    return f"{where or 'The request'}: {message[0].lower()}{message[1:]}; fix it and send again."


def install(app: FastAPI) -> None:
    @app.exception_handler(HeraldError)
    async def herald_error(_request: Request, exc: HeraldError) -> JSONResponse:
        return problem(status_of(exc), str(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return problem(422, field_sentence(exc.errors()[0]) if exc.errors() else "The request is not valid.")

    @app.exception_handler(HTTPException)
    async def http_error(_request: Request, exc: HTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
        return problem(exc.status_code, detail, headers=getattr(exc, "headers", None))
