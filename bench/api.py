"""The HTTP API (`herald api`) against what it wraps.

(1) PDF export: `GET /api/v1/reports/video-performance/export?format=pdf` of the demo report
    (real Chromium, the demo's SQLite data) against the in-process export of the same report
    (`services.documents.export_report`, as `herald export` runs it), alternately, medians.
    Goal: HTTP at most 1.15x in-process.
(2) The runs list, `GET /api/v1/runs` (the first page of 50, newest first) over 1,000,000 runs
    and ~3,000,000 deliveries (PostgreSQL, bench/_history.py), 16 concurrent clients, each its
    own token, closed loops, for a fixed time; with one API process and with two (`--workers
    2`), and one client alone for the latency without queueing. Goal: p50 at most 30 ms.
(3) Authenticated requests/s (`GET /api/v1/whoami`: token checked, rate limit counted in Redis)
    against the same app's unauthenticated hello route (`GET /healthz`), 16 concurrent clients.
    Goal: at least 0.7x. `GET /api/v1/reports` (one query more) is shown too.

The API runs as `herald api` (one uvicorn process) on this machine, the load from one process
of raw keep-alive connections (bench/_load.py): both share the machine's cores.

    python bench/api.py [--renders 15] [--seconds 10] [--clients 16] [--only pdf|runs|auth]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402

from bench._common import create_database, drop_database, free_port  # noqa: E402
from bench._history import populate_history  # noqa: E402
from bench._load import request, run_load  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
REDIS = os.environ.get("HERALD_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def start_api(env: dict[str, str], log: Path, workers: int = 1) -> tuple[subprocess.Popen, int]:
    """`herald api --workers N` with `env` on a free port, once /healthz answers."""
    port = free_port()
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "herald", "api", "--port", str(port),
                                    "--workers", str(workers)],
                                   env={**os.environ, **env}, cwd=ROOT, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"herald api exited: {log.read_text()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return process, port
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit(f"herald api did not answer: {log.read_text()}")


def stop(process: subprocess.Popen) -> None:
    """SIGTERM to its process group (the workers of `--workers N` too)."""
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)


def use_database(url: str) -> None:
    """This process's settings on `url` (the in-process side, and the tokens made here)."""
    os.environ["DATABASE_URL"] = url
    from models.settings import get_settings

    get_settings.cache_clear()


def make_tokens(tenant: str, count: int) -> list[str]:
    from models.db import session_scope, utcnow
    from services import tokens
    from services.access import OPERATOR
    from services.tenants import get_tenant

    with session_scope() as session:
        tenant_id = get_tenant(session, OPERATOR, tenant).id
        return [tokens.create_token(session, OPERATOR, tenant_id, tokens.SCOPES,
                                    name=f"bench {i}", now=utcnow()).token for i in range(count)]


def ms(values: list[float]) -> float:
    return statistics.median(values) * 1000


# --- (1) PDF export ----------------------------------------------------------------------------

def bench_pdf(renders: int, directory: Path) -> None:
    use_database(f"sqlite:///{directory / 'herald-demo.db'}")
    os.environ["RENDER_PDF_STUB"] = "false"
    from herald.demo import new_login, seed_demo
    from models.base import Format
    from models.db import session_scope, utcnow
    from services.access import OPERATOR
    from services.documents import export_report

    seed_demo(directory, new_login({}), utcnow())
    [token] = make_tokens("demo", 1)
    process, port = start_api({"RENDER_PDF_STUB": "false", "REDIS_URL": ""}, directory / "api.log")
    target = directory / "in-process.pdf"
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120,
                          headers={"Authorization": f"Bearer {token}"})
    sizes = {}

    def over_http() -> None:
        answer = client.get("/api/v1/reports/video-performance/export", params={"format": "pdf"})
        answer.raise_for_status()
        sizes["http"] = len(answer.content)

    def in_process() -> None:
        with session_scope() as session:
            export_report(session, OPERATOR, "demo", "video-performance", Format.PDF, target, utcnow())
        sizes["in-process"] = target.stat().st_size

    try:
        over_http(), in_process()   # warm: each side's Chromium is up
        times: dict[str, list[float]] = {"http": [], "in-process": []}
        for _ in range(renders):
            for name, function in (("http", over_http), ("in-process", in_process)):
                started = time.perf_counter()
                function()
                times[name].append(time.perf_counter() - started)
    finally:
        client.close()
        stop(process)
    ratio = ms(times["http"]) / ms(times["in-process"])
    print(f"(1) demo report as PDF (real Chromium; {sizes['http']:,} and {sizes['in-process']:,} "
          f"bytes), medians of {renders}, alternately")
    print(f"  in-process export (herald export):      {ms(times['in-process']):7.1f} ms")
    print(f"  GET …/export?format=pdf over HTTP:      {ms(times['http']):7.1f} ms")
    print(f"  HTTP / in-process = {ratio:.2f} (goal <= 1.15): {'met' if ratio <= 1.15 else 'NOT met'}",
          flush=True)


# --- (2) the runs list and (3) authenticated requests ------------------------------------------

def bench_runs_and_auth(seconds: float, clients: int, parts: set[str]) -> None:
    name, url = create_database()
    try:
        from models import migrate

        migrate.upgrade(url)
        started = time.perf_counter()
        counts = populate_history(url, NOW)
        print(f"(2, 3) {counts['runs']:,} runs and {counts['deliveries']:,} deliveries; populated "
              f"in {time.perf_counter() - started:.0f} s", flush=True)
        use_database(url)
        tokens = make_tokens("acme", clients)
        namespace = f"herald-bench-{name}"
        env = {"REDIS_URL": REDIS, "HERALD_REDIS_NAMESPACE": namespace, "HERALD_API_RATE_LIMIT": "60000"}
        with tempfile.TemporaryDirectory(prefix="herald-bench-api-") as directory:
            for workers in (1, 2) if "runs" in parts else (1,):
                process, port = start_api(env, Path(directory) / "api.log", workers)
                try:
                    if "runs" in parts:
                        _runs(port, tokens, seconds, workers)
                    if "auth" in parts and workers == 1:
                        _auth(port, tokens, seconds)
                finally:
                    stop(process)
    finally:
        drop_database(name)


def _runs(port: int, tokens: list[str], seconds: float, workers: int) -> None:
    first = httpx.get(f"http://127.0.0.1:{port}/api/v1/runs", params={"limit": 50},
                      headers={"Authorization": f"Bearer {tokens[0]}"}).json()
    assert len(first["runs"]) == 50 and first["next"], first
    page = [[request("/api/v1/runs?limit=50", t)] for t in tokens]
    run_load(port, page, 2)   # warm-up
    print(f"(2) GET /api/v1/runs?limit=50 (first page of 800,000 runs), herald api --workers {workers}, "
          f"{seconds:.0f} s each")
    if workers == 1:
        alone = run_load(port, page[:1], seconds)
        print(f"  1 client:   {alone.summary()}")
    load = run_load(port, page, seconds)
    p50 = statistics.median(load.latencies) * 1000
    print(f"  {len(tokens)} clients: {load.summary()}")
    print(f"  p50 {p50:.1f} ms with {len(tokens)} clients (goal <= 30): {'met' if p50 <= 30 else 'NOT met'}",
          flush=True)


def _auth(port: int, tokens: list[str], seconds: float) -> None:
    hello = [[request("/healthz")] for _ in tokens]
    whoami = [[request("/api/v1/whoami", t)] for t in tokens]
    listed = [[request("/api/v1/reports", t)] for t in tokens]
    run_load(port, hello, 1), run_load(port, whoami, 1)   # warm-up
    loads = {"hello": run_load(port, hello, seconds), "whoami": run_load(port, whoami, seconds),
             "reports": run_load(port, listed, seconds)}
    ratio = loads["whoami"].rate / loads["hello"].rate
    print(f"(3) {len(tokens)} clients, {seconds:.0f} s each")
    print(f"  GET /healthz (no credentials):                {loads['hello'].summary()}")
    print(f"  GET /api/v1/whoami (token + rate limit):      {loads['whoami'].summary()}")
    print(f"  GET /api/v1/reports (token + one query):      {loads['reports'].summary()}")
    print(f"  authenticated / hello = {ratio:.2f} (goal >= 0.7): {'met' if ratio >= 0.7 else 'NOT met'}; "
          f"reports list / hello = {loads['reports'].rate / loads['hello'].rate:.2f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--renders", type=int, default=15)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--only", choices=("pdf", "runs", "auth"), help="run one part")
    args = parser.parse_args()
    if args.only in (None, "pdf"):
        with tempfile.TemporaryDirectory(prefix="herald-bench-api-pdf-") as directory:
            bench_pdf(args.renders, Path(directory))
    if args.only != "pdf":
        bench_runs_and_auth(args.seconds, args.clients, {args.only} if args.only else {"runs", "auth"})


if __name__ == "__main__":
    main()
