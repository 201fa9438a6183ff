"""What the benchmarks share: a throwaway PostgreSQL database and a free local port."""

from __future__ import annotations

import os
import socket
import uuid

import psycopg

PG_ADMIN = os.environ.get("HERALD_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def create_database() -> tuple[str, str]:
    """A new empty database: (its name, its SQLAlchemy URL)."""
    name = f"herald_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name, PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://") + "/" + name


def create_reader(name: str) -> str:
    """A login role that may only read database `name`, as herald requires of a tenant's data
    source; returns its SQLAlchemy URL. `drop_database` drops it too."""
    role = f"{name}_reader"
    admin = PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE \"{role}\" LOGIN PASSWORD '{role}'")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'GRANT CONNECT ON DATABASE "{name}" TO "{role}"')
        conn.execute(f'GRANT USAGE ON SCHEMA public TO "{role}"')
        conn.execute(f'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{role}"')
    host = admin.split("@", 1)[1]
    return f"postgresql+psycopg://{role}:{role}@{host}"


def drop_database(name: str) -> None:
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'DROP ROLE IF EXISTS "{name}_reader"')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_workers(env: dict[str, str], processes: int, threads: int, log, module: str = "jobs"):
    """`dramatiq jobs` (or another broker `module`) with `env`, in a session of its own (so `kill_group` reaches every child),
    its output in the file `log`; the `subprocess.Popen`, once every worker process says it is ready."""
    import subprocess
    import sys
    import time
    from pathlib import Path

    with open(log, "w") as out:
        workers = subprocess.Popen(
            [sys.executable, "-m", "dramatiq", module, "--processes", str(processes), "--threads", str(threads)],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            cwd=Path(__file__).resolve().parents[1])
    deadline = time.monotonic() + 60
    while Path(log).read_text().count("Worker process is ready for action") < processes:
        if workers.poll() is not None or time.monotonic() > deadline:
            kill_group(workers)
            raise RuntimeError(f"the workers did not start:\n{log_tail(log)}")
        time.sleep(0.2)
    return workers


def kill_group(process) -> None:
    """SIGKILL a process started with `start_new_session=True` and everything in its session."""
    import os
    import signal

    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(timeout=30)


def log_tail(log, lines: int = 30) -> str:
    with open(log, errors="replace") as f:
        return "".join(f.readlines()[-lines:])


def clear_redis_namespace(url: str, namespace: str) -> None:
    """Delete every key of a private Redis namespace."""
    import redis

    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(f"{namespace}*"))
    if keys:
        client.delete(*keys)


def cpu_snapshot(root: int, databases: list[str]) -> dict[str, float]:
    """CPU seconds so far (user + system, reaped children's included) of `root`'s process tree
    (Playwright starts Chromium in a session of its own, but as a descendant), of PostgreSQL (all
    of it: a backend that exited is only seen in the postmaster's children's time) and the whole
    machine's busy time (all cores); and the sessions opened on `databases`. Keys: workers,
    postgres, machine, sessions."""
    from pathlib import Path

    ticks, procs = os.sysconf("SC_CLK_TCK"), {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            name, rest = stat.read_text().split(" (", 1)[1].rsplit(") ", 1)
        except (OSError, IndexError, ValueError):
            continue
        fields = rest.split()
        procs[int(stat.parent.name)] = (name, int(fields[1]), sum(int(f) for f in fields[11:15]) / ticks)
    tree, frontier = set(), {root}
    while frontier:
        tree |= frontier
        frontier = {pid for pid, (_, parent, _) in procs.items() if parent in frontier} - tree
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        sessions = conn.execute("SELECT sum(sessions) FROM pg_stat_database WHERE datname = ANY(%s)",
                                (databases,)).fetchone()[0]
    busy = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return {"workers": sum(procs[p][2] for p in tree if p in procs),
            "postgres": sum(cpu for name, _, cpu in procs.values() if name.startswith("postgres")),
            "machine": (sum(busy[:3]) + busy[5] + busy[6]) / ticks,  # user nice system irq softirq
            "sessions": float(sessions or 0)}
