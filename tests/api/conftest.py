"""A real `herald api` process on a free port, on the test's database, and the tenants, reports
and tokens the API's tests call it with (an httpx client per token)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlmodel import Session

from models.db import session_scope, utcnow
from models.definition import parse_definition
from models.settings import get_settings
from services import tokens
from services.access import OPERATOR
from tests.delivery.conftest import REPORT, fast_retries, mail_sink, videos_db, videos_file  # noqa: F401
from tests.delivery.servers import free_port
from tests.seeding import add_schedule, add_tenant, save_report

ROOT = Path(__file__).resolve().parents[2]
ALL_SCOPES = ("reports.read", "reports.write", "schedules.read", "schedules.write")


@dataclass
class Api:
    url: str
    process: subprocess.Popen
    log: Path

    def client(self, token: str | None = None, **headers: str) -> httpx.Client:
        auth = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers={**auth, **headers}, timeout=60)


def start_api(tmp_path: Path, env: dict[str, str] | None = None, port: int | None = None) -> Api:
    """`herald api` on `port` (else a free one) with this process's environment (and `env`),
    once /healthz answers."""
    port = port or free_port()
    log = tmp_path / f"api-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "herald", "api", "--port", str(port)],
                                   env={**os.environ, **(env or {})}, cwd=ROOT, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"herald api exited: {log.read_text()}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return Api(url, process, log)
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise AssertionError(f"herald api did not answer /healthz: {log.read_text()}")


def stop_api(api: Api) -> None:
    api.process.terminate()
    try:
        api.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        api.process.kill()


@pytest.fixture
def api_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Embedded (no broker) and a stub PDF unless a test says otherwise."""
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.setenv("RENDER_PDF_STUB", "true")
    get_settings.cache_clear()


@pytest.fixture
def api(db_url: str, api_env: None, tmp_path: Path) -> Iterator[Api]:
    running = start_api(tmp_path)
    yield running
    stop_api(running)


@dataclass
class World:
    acme: int
    beta: int
    schedule: int          # acme's
    their_schedule: int    # beta's
    token: Callable[..., str]


@pytest.fixture
def world(session: Session, videos_file: str) -> World:  # noqa: F811 - the fixture imported above
    """acme (the demo-like report over a SQLite data source, a schedule) and beta (the same)."""
    acme = add_tenant(session, "acme", "Acme", "Europe/Berlin", videos_file)
    beta = add_tenant(session, "beta", "Beta", "UTC", videos_file)
    schedules = {}
    for tenant in (acme, beta):
        save_report(session, tenant, parse_definition(REPORT))
        schedules[tenant.slug] = add_schedule(session, tenant, "video-performance", now=utcnow(),
                                              cron_expr="0 9 * * *", formats=["csv"],
                                              emails=[f"boss@{tenant.slug}.example"]).id
    session.commit()

    def token(*scopes: str, tenant: str = "acme", expires_days: int | None = None) -> str:
        with session_scope() as own:
            tenant_id = acme.id if tenant == "acme" else beta.id
            return tokens.create_token(own, OPERATOR, tenant_id, scopes or ALL_SCOPES,
                                       expires_days=expires_days, now=utcnow()).token

    return World(acme.id, beta.id, schedules["acme"], schedules["beta"], token)


def token_for(slug: str, *scopes: str) -> str:
    """A token of the tenant `slug` with `scopes`, made as `herald token create` makes it."""
    from sqlmodel import select

    from models.tenancy import Tenant

    with session_scope() as session:
        tenant_id = session.exec(select(Tenant.id).where(Tenant.slug == slug)).one()
        return tokens.create_token(session, OPERATOR, tenant_id, scopes, now=utcnow()).token
