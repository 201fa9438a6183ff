"""The limits that protect the workers: the exports a process runs at once and each credential's
requests a minute (kept in Redis, so it holds across API processes) both answer 429 with
Retry-After; under 50 concurrent clients nothing else breaks."""

from __future__ import annotations

import random
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis

from models.db import session_scope
from models.definition import parse_definition
from tests.api.conftest import World, start_api, stop_api, token_for
from tests.seeding import add_tenant, save_report

PROBLEM = "application/problem+json"


@pytest.fixture
def slow_tenant(db_url: str, create_tenant_database) -> None:
    """A PostgreSQL tenant `slowco` whose report `counting` streams a billion rows (a set-returning
    function in the select list yields row by row; in FROM it would compute them all first)."""
    db = create_tenant_database()
    with session_scope() as session:
        tenant = add_tenant(session, "slowco", "Slow Co", "UTC", db.url)
        save_report(session, tenant, parse_definition({
            "slug": "counting", "title": "Counting",
            "csv": {"sql": "SELECT generate_series(1, 1000000000) AS i"}}))


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_the_export_bound_answers_429_with_retry_after(
    slow_tenant: None, world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    api = start_api(tmp_path, {"HERALD_API_MAX_EXPORTS": "1"})
    try:
        client = api.client(token_for("slowco", "reports.read"))
        export = {"format": "csv"}
        with client.stream("GET", "/api/v1/reports/counting/export", params=export) as first:
            assert first.status_code == 200
            body = first.iter_bytes()   # kept: a dropped iterator closes the stream
            next(body)
            refused = client.get("/api/v1/reports/counting/export", params=export)
            assert refused.status_code == 429 and refused.headers["content-type"] == PROBLEM
            assert refused.headers["retry-after"] == "5"
            assert refused.json()["detail"] == (
                "1 exports are running in this API process, the most it runs at once; try again "
                "in a few seconds.")
            assert client.get("/api/v1/reports").status_code == 200   # reads go on
        # The first export's client went away: its slot is free again.
        deadline = time.monotonic() + 5
        while True:
            with client.stream("GET", "/api/v1/reports/counting/export", params=export) as again:
                if again.status_code == 200 or time.monotonic() > deadline:
                    break
            time.sleep(0.1)
        assert again.status_code == 200
    finally:
        stop_api(api)


def test_the_rate_limit_holds_across_api_processes(
    db_url: str, world: World, tmp_path: Path, redis_namespace: str, redis_client: redis.Redis
) -> None:
    env = {"HERALD_API_RATE_LIMIT": "6", "RENDER_PDF_STUB": "true"}
    apis = [start_api(tmp_path, env) for _ in range(2)]
    try:
        token, other = world.token("reports.read"), world.token("reports.read")
        clients = [api.client(token) for api in apis]
        answers = [clients[i % 2].get("/api/v1/reports").status_code for i in range(6)]
        assert answers == [200] * 6
        for client in clients:   # the seventh in a minute, whichever process it reaches
            refused = client.get("/api/v1/reports")
            assert refused.status_code == 429 and refused.headers["content-type"] == PROBLEM
            assert 1 <= int(refused.headers["retry-after"]) <= 10   # a slot every 10 s
            assert refused.json()["detail"].startswith(
                "These credentials made more than 6 requests in a minute (HERALD_API_RATE_LIMIT)")
        assert apis[1].client(other).get("/api/v1/reports").status_code == 200  # per credential
        assert list(redis_client.scan_iter(f"{redis_namespace}:api-rate:*"))
    finally:
        for api in apis:
            stop_api(api)


def test_without_redis_each_process_counts_on_its_own(db_url: str, world: World, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    api = start_api(tmp_path, {"HERALD_API_RATE_LIMIT": "3", "RENDER_PDF_STUB": "true"})
    try:
        client = api.client(world.token("reports.read"))
        assert [client.get("/api/v1/reports").status_code for _ in range(4)] == [200, 200, 200, 429]
    finally:
        stop_api(api)


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_fifty_concurrent_clients_get_answers_or_429_and_nothing_breaks(
    world: World, tmp_path: Path, redis_namespace: str
) -> None:
    """50 clients at once, each with its own token, reading, exporting and sending (to Redis);
    one greedy client past its rate limit. Every answer is the one asked for, or a 429 where a limit was
    reached; no 5xx; the process answers the same afterwards."""
    api = start_api(tmp_path, {"HERALD_API_RATE_LIMIT": "40", "HERALD_API_MAX_EXPORTS": "2"})
    try:
        tokens = [world.token() for _ in range(50)]
        greedy = world.token("reports.read")
        schedule, run_ids = world.schedule, []

        def client_work(token: str) -> list[tuple[str, int]]:
            seen = []
            with api.client(token) as client:
                for _ in range(8):
                    kind = random.choice(["reports", "report", "schedules", "runs", "export", "send"])
                    if kind == "reports":
                        r = client.get("/api/v1/reports")
                    elif kind == "report":
                        r = client.get("/api/v1/reports/video-performance")
                    elif kind == "schedules":
                        r = client.get(f"/api/v1/schedules/{schedule}")
                    elif kind == "runs":
                        r = client.get("/api/v1/runs", params={"limit": 20})
                    elif kind == "export":
                        r = client.get("/api/v1/reports/video-performance/export", params={"format": "csv"})
                        if r.status_code == 200:
                            assert r.headers["content-type"].startswith("text/csv")
                    else:
                        r = client.post(f"/api/v1/schedules/{schedule}/send")
                        if r.status_code == 202:
                            run_ids.append(r.json()["run_id"])
                    seen.append((kind, r.status_code))
            return seen

        def greedy_work() -> tuple[list[int], float]:
            started = time.monotonic()
            with api.client(greedy) as client:
                codes = [client.get("/api/v1/reports").status_code for _ in range(60)]
            return codes, time.monotonic() - started

        with ThreadPoolExecutor(51) as pool:
            greedy_answers = pool.submit(greedy_work)
            answers = [a for seen in pool.map(client_work, tokens) for a in seen]
        expected = {"reports": {200}, "report": {200}, "schedules": {200}, "runs": {200},
                    "export": {200, 429}, "send": {202}}
        wrong = [(kind, code) for kind, code in answers if code not in expected[kind]]
        assert wrong == [], wrong
        codes, took = greedy_answers.result()
        # 40 at once, then one each 1.5 s (a minute / 40) while it kept asking.
        assert 40 <= codes.count(200) <= 40 + took / 1.5 + 1 and codes.count(429) >= 1, (codes, took)
        assert len(set(run_ids)) == len(run_ids)

        with api.client(world.token()) as client:   # it answers as before
            assert client.get("/readyz").status_code == 200
            assert client.get("/api/v1/reports/video-performance/export",
                              params={"format": "csv"}).status_code == 200
            listed = client.get("/api/v1/runs", params={"limit": 500}).json()["runs"]
        assert sorted(r["id"] for r in listed) == sorted(run_ids)
        assert {r["status"] for r in listed} <= {"queued"}   # each in the broker, for the workers
        assert "Traceback" not in api.log.read_text()
    finally:
        stop_api(api)



def test_a_body_over_the_limit_is_413_declared_or_chunked(db_url: str, world: World, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    api = start_api(tmp_path, {"HERALD_API_MAX_BODY_BYTES": "2048"})
    try:
        client = api.client(world.token("reports.read", "reports.write"))
        big = b"slug: x\n" + b"# " + b"x" * 4096 + b"\n"
        declared = client.put("/api/v1/reports/x", content=big, headers={"Content-Type": "application/yaml"})
        chunked = client.put("/api/v1/reports/x", content=iter([big[:1000], big[1000:]]),
                             headers={"Content-Type": "application/yaml"})
        for answer in (declared, chunked):
            assert answer.status_code == 413 and answer.headers["content-type"] == PROBLEM
            assert "herald takes at most 2,048 (HERALD_API_MAX_BODY_BYTES)" in answer.json()["detail"]
        assert "content-length" not in chunked.request.headers
        assert client.get("/api/v1/reports/x").status_code == 404   # nothing was saved
    finally:
        stop_api(api)
