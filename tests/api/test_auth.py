"""Who may call the API: tokens with scopes. 401 without valid credentials (none, malformed,
unknown, expired, revoked), 403 for a scope the token lacks, and another tenant's objects read
as 404. Every error is a problem document."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlmodel import Session, select

from models.audit import ChangeEvent
from models.db import session_scope, utcnow
from models.definition import parse_definition
from models.tenancy import Tenant
from models.tokens import ApiToken
from services import tokens
from services.access import OPERATOR
from tests.api.conftest import Api, World
from tests.delivery.conftest import REPORT
from tests.seeding import save_report

PROBLEM = "application/problem+json"


def test_no_or_bad_credentials_get_401(api: Api, world: World) -> None:
    for headers in ({}, {"Authorization": "Bearer nonsense"}, {"Authorization": "Basic dXNlcjpwdw=="},
                    {"Authorization": "Bearer herald_00000000_" + "x" * 43},
                    {"Authorization": "Bearer " + world.token("reports.read")[:-1] + "X"},
                    {"Authorization": "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"}):
        response = api.client(**headers).get("/api/v1/reports")
        assert response.status_code == 401, headers
        assert response.headers["content-type"] == PROBLEM
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json()["detail"].startswith("Send Authorization: Bearer <token>")


def test_expired_and_revoked_tokens_get_401(api: Api, world: World) -> None:
    """Within HERALD_API_TOKEN_CACHE_SECONDS (2 s): the API trusts a token it checked that long."""
    expiring, revoked = world.token("reports.read", expires_days=1), world.token("reports.read")
    for token in (expiring, revoked):
        assert api.client(token).get("/api/v1/reports").status_code == 200
    with session_scope() as session:
        session.execute(sa.update(ApiToken).where(ApiToken.prefix == expiring.split("_")[1])
                        .values(expires_at=utcnow() - timedelta(seconds=1)))
        row = session.exec(select(ApiToken).where(ApiToken.prefix == revoked.split("_")[1])).one()
        tokens.revoke_token(session, OPERATOR, row.id, now=utcnow())
    changed = time.monotonic()
    for token in (expiring, revoked):
        while (answer := api.client(token).get("/api/v1/reports")).status_code == 200:
            assert time.monotonic() - changed < 2.5, "still accepted after the cache's 2 s"
            time.sleep(0.1)
        assert answer.status_code == 401


def test_whoami_names_the_credentials(api: Api, world: World) -> None:
    token = world.token("reports.read", "schedules.read")
    answer = api.client(token).get("/api/v1/whoami").json()
    assert answer == {"tenant_id": world.acme, "scopes": ["reports.read", "schedules.read"],
                      "actor": f"token herald_{token.split('_')[1]} (token {token.split('_')[1]})"}
    assert api.client().get("/api/v1/whoami").status_code == 401


def test_the_schema_and_docs_describe_the_api(api: Api) -> None:
    schema = api.client().get("/api/v1/openapi.json").json()
    assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    send = schema["paths"]["/api/v1/schedules/{schedule_id}/send"]["post"]
    assert send["security"] == [{"bearer": []}]
    assert "Idempotency-Key" in [p["name"] for p in send["parameters"]]
    assert "security" not in schema["paths"]["/healthz"]["get"]
    assert {"/api/v1/reports/{slug}/export", "/api/v1/runs", "/unsubscribe/{token}"} <= set(schema["paths"])
    docs = api.client().get("/api/v1/docs")
    assert docs.status_code == 200 and "/api/v1/openapi.json" in docs.text


def test_a_token_is_shown_once_kept_as_a_hash_and_its_use_is_noted(
    api: Api, world: World, session: Session
) -> None:
    token = world.token("reports.read")
    prefix, secret = token.split("_")[1], token.split("_", 2)[2]
    row = session.exec(select(ApiToken).where(ApiToken.prefix == prefix)).one()
    assert secret not in str(row.model_dump()) and row.last_used_at is None
    assert api.client(token).get("/api/v1/reports").status_code == 200
    session.rollback()  # end the test's read, to see what the API committed
    assert session.get(ApiToken, row.id).last_used_at is not None
    created = session.exec(select(ChangeEvent).where(ChangeEvent.object_type == "token")).one()
    assert (created.action, created.actor, created.changes["scopes"]) == (
        "created", "cli", [None, ["reports.read"]])


# (method, path, body, the scope it needs); {s} is acme's schedule
ENDPOINTS = [
    ("GET", "/api/v1/reports", None, "reports.read"),
    ("GET", "/api/v1/reports/video-performance", None, "reports.read"),
    ("GET", "/api/v1/reports/video-performance/export?format=csv", None, "reports.read"),
    ("PUT", "/api/v1/reports/video-performance", "slug: video-performance", "reports.write"),
    ("POST", "/api/v1/reports/video-performance/refresh", None, "reports.write"),
    ("GET", "/api/v1/schedules", None, "schedules.read"),
    ("GET", "/api/v1/schedules/{s}", None, "schedules.read"),
    ("GET", "/api/v1/runs", None, "schedules.read"),
    ("POST", "/api/v1/schedules", {"report": "video-performance", "cadence": "daily", "at": "08:00",
                                   "email": ["x@acme.example"]}, "schedules.write"),
    ("PATCH", "/api/v1/schedules/{s}", {"subject": "Views"}, "schedules.write"),
    ("POST", "/api/v1/schedules/{s}/pause", None, "schedules.write"),
]


def call(api: Api, token: str, method: str, path: str, body: object, world: World):
    client = api.client(token)
    path = path.format(s=world.schedule)
    if isinstance(body, str):
        return client.request(method, path, content=body, headers={"Content-Type": "application/yaml"})
    return client.request(method, path, json=body)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_each_scope_allows_what_it_names_and_nothing_else(api: Api, world: World) -> None:
    for scope in ("reports.read", "reports.write", "schedules.read", "schedules.write"):
        token = world.token(scope)
        for method, path, body, needs in ENDPOINTS:
            response = call(api, token, method, path, body, world)
            if needs == scope:
                # allowed: it got past the scope (a refusal now is about the request itself)
                assert response.status_code not in (401, 403), (scope, method, path, response.text)
            else:
                assert response.status_code == 403, (scope, method, path, response.text)
                assert response.json()["detail"] == (
                    f"These credentials lack the {needs} scope; use a token that has it "
                    f"(`herald token create --scope {needs}`).")


def test_another_tenants_objects_read_as_404(api: Api, world: World, session: Session) -> None:
    beta = session.get(Tenant, world.beta)
    save_report(session, beta, parse_definition({**REPORT, "slug": "beta-only"}))
    session.commit()
    client = api.client(world.token())
    theirs = world.their_schedule
    for method, path in [("GET", f"/api/v1/schedules/{theirs}"), ("PATCH", f"/api/v1/schedules/{theirs}"),
                         ("DELETE", f"/api/v1/schedules/{theirs}"),
                         ("POST", f"/api/v1/schedules/{theirs}/send"),
                         ("POST", f"/api/v1/schedules/{theirs}/pause"),
                         ("GET", "/api/v1/reports/beta-only"),
                         ("GET", "/api/v1/reports/beta-only/export?format=csv")]:
        response = client.request(method, path, json={} if method == "PATCH" else None)
        assert response.status_code == 404, (method, path, response.text)
        assert response.headers["content-type"] == PROBLEM
    their_run = api.client(world.token(tenant="beta")).post(f"/api/v1/schedules/{theirs}/send").json()
    assert client.get(f"/api/v1/runs/{their_run['run_id']}").status_code == 404
    assert client.post(f"/api/v1/runs/{their_run['run_id']}/resend").status_code == 404
    assert their_run["run_id"] not in [r["id"] for r in client.get("/api/v1/runs").json()["runs"]]
