"""The HTTP API reads a report file through the same bounded loader as the CLI and the admin:
an alias bomb under any key, or nesting too deep, is answered 422 at once in one short sentence,
the API process barely grows, and nothing is saved."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.api.conftest import Api, World
from tests.models.test_report_bounds import KEYS, SHORT, alias_bomb, with_value

PROBLEM = "application/problem+json"
YAML = {"Content-Type": "application/yaml"}


def memory_mb(pid: int, field: str) -> float:
    """A field of /proc/<pid>/status in MB: VmRSS (now) or VmHWM (the peak so far)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no {field} for process {pid}")


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_bomb_under_any_key_or_deep_nesting_is_refused_at_once(api: Api, world: World) -> None:
    client = api.client(world.token("reports.read", "reports.write"))
    assert client.get("/api/v1/reports").status_code == 200  # the process is warm
    Path(f"/proc/{api.process.pid}/clear_refs").write_text("5")  # the peak starts from now
    before = memory_mb(api.process.pid, "VmRSS")
    bodies = [with_value(key, alias_bomb()).replace("video-performance", "bomb") for key in KEYS]
    bodies.append("slug: bomb\ntitle: " + "[" * 50_000 + "]" * 50_000 + "\n")
    for body in bodies:
        started = time.monotonic()
        answer = client.put("/api/v1/reports/bomb", content=body.encode(), headers=YAML)
        seconds = time.monotonic() - started
        assert answer.status_code == 422 and answer.headers["content-type"] == PROBLEM, answer.text
        detail = answer.json()["detail"]
        assert "\n" not in detail and detail.endswith(".") and len(detail) < SHORT, detail
        assert seconds < 1, (body[:80], seconds)
    assert memory_mb(api.process.pid, "VmHWM") - before < 100, "the API process grew by 100 MB"
    assert client.get("/api/v1/reports/bomb").status_code == 404  # nothing was saved
    assert "Traceback" not in api.log.read_text()
