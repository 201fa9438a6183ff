"""The FastAPI application: `/api/v1` (reports, schedules, runs), `/healthz`, `/readyz`, the
one-click unsubscribe pages (`/unsubscribe/{token}`), the OpenAPI schema
(`/api/v1/openapi.json`) and its interactive docs (`/api/v1/docs`)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse

from api import problems, reports, runs, schedules, unsubscribe
from api.limits import RateLimit
from models.db import get_engine
from models.settings import get_settings

VERSION = "v1"


def create_app() -> FastAPI:
    settings = get_settings()
    reports.limit_exports(settings.api_max_exports)
    app = FastAPI(title="herald", version=VERSION,
                  description="Scheduled report delivery: reports, their export, schedules and runs.",
                  openapi_url=f"/api/{VERSION}/openapi.json", docs_url=f"/api/{VERSION}/docs",
                  redoc_url=None)
    app.state.rate_limit = RateLimit(settings)
    problems.install(app)
    v1 = APIRouter(prefix=f"/api/{VERSION}")
    for module in (reports, schedules, runs):
        v1.include_router(module.router)
    app.include_router(v1)
    app.include_router(unsubscribe.router)

    @app.middleware("http")
    async def limit_body(request: Request, call_next: Any) -> Any:
        """A body larger than HERALD_API_MAX_BODY_BYTES is refused before it is read."""
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > settings.api_max_body_bytes:
            return problems.problem(413, f"The body is {int(declared):,} bytes; herald takes at most "
                                         f"{settings.api_max_body_bytes:,} (HERALD_API_MAX_BODY_BYTES).")
        return await call_next(request)

    @app.get("/healthz", tags=["health"], summary="200 while the process is up")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], summary="200 when the database and the broker answer")
    def readyz() -> JSONResponse:
        problems_found = _unready()
        if problems_found:
            return problems.problem(503, " ".join(problems_found))
        return JSONResponse({"status": "ready"})

    return app


def _unready() -> list[str]:
    """One sentence for each of the database and the broker that does not answer."""
    found = []
    try:
        with get_engine().connect() as connection:
            connection.execute(sa.text("SELECT 1"))
    except sa.exc.SQLAlchemyError as exc:
        found.append(f"The database at DATABASE_URL does not answer ({type(exc).__name__}).")
    url = get_settings().redis_url
    if url and not url.startswith(("amqp://", "amqps://")):
        import redis

        try:
            client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
            client.ping()
            client.close()
        except (redis.RedisError, OSError) as exc:
            found.append(f"Redis at REDIS_URL does not answer ({type(exc).__name__}).")
    return found
