"""The FastAPI application: `/api/v1` (reports, schedules, runs), `/healthz`, `/readyz`, the
one-click unsubscribe pages (`/unsubscribe/{token}`), the OpenAPI schema
(`/api/v1/openapi.json`) and its interactive docs (`/api/v1/docs`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse

from api import problems, reports, runs, schedules, unsubscribe
from api.auth import BEARER, TokenCache, client
from api.limits import BodyLimit, RateLimit
from models.reachability import broker_problem, database_problem
from models.settings import get_settings
from services.access import ApiClient

VERSION = "v1"


def create_app() -> FastAPI:
    settings = get_settings()
    reports.limit_exports(settings.api_max_exports)
    app = FastAPI(title="herald", version=VERSION,
                  description="Scheduled report delivery: reports, their export, schedules and runs.",
                  openapi_url=f"/api/{VERSION}/openapi.json", docs_url=f"/api/{VERSION}/docs",
                  redoc_url=None)
    app.state.rate_limit = RateLimit(settings)
    app.state.tokens = TokenCache(settings.api_token_cache_seconds)
    problems.install(app)
    # Beside /healthz rather than in the v1 router: the cheapest authenticated route there is
    # (one router less to match), for a script's check that its token works.
    @app.get(f"/api/{VERSION}/whoami", tags=["health"], summary="The credentials this request carries")
    async def whoami(caller: ApiClient = Depends(client)) -> dict[str, Any]:
        """Their tenant, scopes and name (a script's check that its token works)."""
        return {"tenant_id": caller.tenant_id, "scopes": sorted(caller.scopes), "actor": caller.actor}

    v1 = APIRouter(prefix=f"/api/{VERSION}")
    for module in (reports, schedules, runs):
        v1.include_router(module.router)

    @app.get("/healthz", tags=["health"], summary="200 while the process is up")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], summary="200 when the database and the broker answer")
    def readyz() -> JSONResponse:
        problems_found = _unready()
        if problems_found:
            return problems.problem(503, " ".join(problems_found))
        return JSONResponse({"status": "ready"})

    app.include_router(v1)
    app.include_router(unsubscribe.router)

    app.add_middleware(BodyLimit, max_bytes=settings.api_max_body_bytes)
    app.openapi = lambda: _schema_with_bearer(app)
    return app


def _schema_with_bearer(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI schema, each /api/v1 operation marked as needing a bearer token."""
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, description=app.description,
                             routes=app.routes)
        schema.setdefault("components", {})["securitySchemes"] = {"bearer": BEARER}
        for path, operations in schema["paths"].items():
            if path.startswith(f"/api/{VERSION}/"):
                for operation in operations.values():
                    operation["security"] = [{"bearer": []}]
        app.openapi_schema = schema
    return app.openapi_schema


def _unready() -> list[str]:
    """One sentence for each of the database and the broker that does not answer."""
    settings = get_settings()
    return [problem for problem in (
        database_problem(settings.database_url),
        broker_problem(settings.redis_url) if settings.redis_url else None) if problem]
