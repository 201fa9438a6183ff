"""Importing herald's admin, its services or the workers' package does nothing to the process:
no broker is built or installed, no actor is declared, the root logger keeps its handlers and
every logger its level. Only the worker commands boot a worker (`dramatiq jobs`, `periodiq
jobs`), and a process that sends builds its broker when it first sends. (What importing
`models.redact` does install is the masking of secrets in herald's own log records, whoever
handles them: `tests/models/test_redact.py`.)

Each check runs in a fresh interpreter, as the Streamlit server or a script would import them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

IMPORT_ALL = """
import importlib, json, logging, os, pkgutil, sys
root, herald = logging.getLogger(), logging.getLogger("herald")
before = [repr(h) for h in root.handlers], root.level, herald.level
imported = []
for package in %(packages)r:
    module = importlib.import_module(package)
    imported.append(package)
    for info in pkgutil.walk_packages(getattr(module, "__path__", []), package + "."):
        importlib.import_module(info.name)
        imported.append(info.name)
import dramatiq.broker
after = [repr(h) for h in root.handlers], root.level, herald.level
print(json.dumps({
    "imported": imported,
    "broker": repr(dramatiq.broker.global_broker),
    "actors": sorted(m for m in sys.modules if m == "jobs.actors"),
    "logging unchanged": before == after,
    "metrics directory": os.environ.get("PROMETHEUS_MULTIPROC_DIR"),
}))
"""


def imports_quietly(*packages: str) -> dict:
    done = subprocess.run([sys.executable, "-c", IMPORT_ALL % {"packages": packages}],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_importing_every_admin_and_service_module_starts_no_broker_and_touches_no_logging() -> None:
    found = imports_quietly("services", "admin")
    assert {"admin.app", "admin.schedules.page", "admin.history.page", "services.runs",
            "services.schedules", "services.health"} <= set(found["imported"])
    assert found["broker"] == "None"
    assert found["actors"] == []
    assert found["logging unchanged"]
    assert found["metrics directory"] is None


def test_importing_the_workers_package_and_the_pipeline_boots_nothing() -> None:
    # The tick, the dispatcher, the shell and the pipeline's steps are importable as plain
    # modules: a worker boots only under `dramatiq jobs` / `periodiq jobs` (tests/jobs).
    found = imports_quietly("jobs.tick", "jobs.dispatch", "jobs.shell", "jobs.worker", "pipeline")
    assert found["broker"] == "None"
    assert found["actors"] == []
    assert found["logging unchanged"]


def test_the_worker_commands_import_boots_a_worker() -> None:
    # What `dramatiq jobs` and `periodiq jobs` do first: import `jobs` as their broker module.
    script = ("import json, logging, dramatiq.cli\n"
              "module, broker = dramatiq.cli.import_broker('jobs')\n"
              "print(json.dumps({'actors': sorted(broker.actors), 'broker': type(broker).__name__,\n"
              "                  'herald handler': any(getattr(h, 'herald', False)\n"
              "                                        for h in logging.getLogger().handlers)}))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT,
                          timeout=120, env={k: v for k, v in os.environ.items() if k != "REDIS_URL"})
    assert done.returncode == 0, done.stderr
    booted = json.loads(done.stdout.splitlines()[-1])
    assert booted == {"actors": ["deliver_stage", "query_stage", "render_stage", "tick_actor"],
                      "broker": "StubBroker", "herald handler": True}
