"""herald's layers, read from the source: who may import whom, and where a run's or a delivery's
status may be written.

    models  ←  tenantdb  ←  renderers, delivery  ←  pipeline  ←  jobs (workers)  ←  services  ←  faces
                                                                           (CLI, admin, HTTP API, jobs.shell)

Every import counts, a function's own too: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("models", "tenantdb", "renderers", "delivery", "pipeline", "jobs", "services", "admin",
            "api", "herald")
LIFECYCLE = "pipeline/lifecycle.py"


def modules(*packages: str) -> Iterator[tuple[str, Path]]:
    """(dotted name, path) of every source module of the packages (migrations aside)."""
    for package in packages:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            yield name, path


def imports(path: Path) -> set[str]:
    """Every module `path` imports, at the top or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def offending(packages: tuple[str, ...], forbidden: tuple[str, ...],
              allowed: tuple[str, ...] = ()) -> list[str]:
    """`module imports name` for each import of a `forbidden` module (or its children) by a
    module of `packages`, leaving out the `allowed` ones."""
    def hits(name: str, prefixes: tuple[str, ...]) -> bool:
        return any(name == p or name.startswith(p + ".") for p in prefixes)

    return sorted(f"{module} imports {name}" for module, path in modules(*packages)
                  for name in imports(path)
                  if hits(name, forbidden) and not hits(name, allowed) and not hits(module, allowed))


def test_models_means_tables_sessions_and_pure_math() -> None:
    assert offending(("models",), ("tenantdb", "renderers", "delivery", "pipeline", "jobs",
                                   "services", "admin", "api", "herald")) == []


def test_the_tenant_boundary_renderers_and_channels_know_nothing_above_them() -> None:
    assert offending(("tenantdb",), ("renderers", "delivery", "pipeline", "jobs", "services",
                                     "admin", "api", "herald")) == []
    assert offending(("renderers", "delivery"), ("pipeline", "jobs", "services", "admin", "api",
                                                 "herald")) == []


def test_the_pipeline_knows_no_worker_service_or_face() -> None:
    assert offending(("pipeline",), ("jobs", "services", "admin", "api", "herald")) == []


def test_the_workers_call_the_pipeline_and_no_face() -> None:
    # jobs.shell is a face (a Python shell's), and calls the services as every face does.
    assert offending(("jobs",), ("services", "admin", "api", "herald"), allowed=("jobs.shell",)) == []


def test_services_sit_below_every_face_and_send_only_through_the_dispatcher() -> None:
    assert offending(("services",), ("admin", "api", "herald", "jobs.actors", "jobs.shell",
                                     "jobs.worker")) == []


def test_the_admin_is_only_ui() -> None:
    """The admin imports neither the CLI's package nor the workers, and reaches the
    pipeline, the tenant boundary, renderers and channels only through the services."""
    assert offending(("admin",), ("herald", "api", "jobs", "pipeline", "tenantdb", "renderers",
                                  "delivery")) == []


def test_the_http_api_is_a_face_like_the_admin() -> None:
    assert offending(("api",), ("herald", "admin", "jobs", "pipeline", "tenantdb", "renderers",
                                "delivery")) == []


def test_the_faces_reach_the_pipeline_only_through_the_services() -> None:
    # `herald tick` and `herald demo` run the tick and workers in-process: they import jobs.
    assert offending(("herald", "admin", "api"), ("pipeline", "tenantdb.postgres", "tenantdb.sqlite")) == []
    assert offending(("jobs",), ("pipeline",), allowed=("jobs.actors", "jobs.tick", "jobs.claim",
                                                        "jobs.dispatch", "jobs.worker")) == []


# --- a run's and a delivery's status: written in pipeline/lifecycle.py only ---------------------

RUN_TABLES = r"(report_run|delivery)"
SQL_WRITES = (
    re.compile(r"\bSET\b(?:(?!\bWHERE\b|\bFROM\b).)*?(?<![\w.])status\s*=", re.IGNORECASE | re.DOTALL),
    re.compile(rf"INSERT\s+INTO\s+{RUN_TABLES}\s*\([^)]*\bstatus\b", re.IGNORECASE),
)


def status_writes(path: Path) -> list[str]:
    """Each place in `path` that writes a `status` column or attribute: `x.status = …`,
    `….values(status=…)`, a run or delivery made with `status=…`, a run's or a delivery's row
    written as a dict with a "status", or SQL text that sets or inserts `status`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for element in ast.walk(target):
                    if isinstance(element, ast.Attribute) and element.attr == "status":
                        found.append(f"{path.name}:{line} assigns .status")
        elif isinstance(node, ast.Call):
            called = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if called in ("values", "ReportRun", "Delivery", "update", "insert") and any(
                    k.arg == "status" for k in node.keywords):
                found.append(f"{path.name}:{line} {called}(status=…)")
        elif isinstance(node, ast.Dict):
            values = {k.value: v for k, v in zip(node.keys, node.values, strict=True)
                      if isinstance(k, ast.Constant)}
            row_of_a_run = set(values) & {"run_id", "schedule_id", "recipient", "scheduled_for"}
            if "status" in values and _a_status(values["status"]) and row_of_a_run:
                found.append(f"{path.name}:{line} a row with a status")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if any(pattern.search(node.value) for pattern in SQL_WRITES):
                found.append(f"{path.name}:{line} SQL writes status")
    return found


def _a_status(node: ast.expr) -> bool:
    """A status written as a value: a string, or RunStatus.X / DeliveryStatus.X (.value)."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str)
    while isinstance(node, ast.Attribute):
        node = node.value
    return isinstance(node, ast.Name) and node.id in ("RunStatus", "DeliveryStatus")


def test_no_status_is_written_outside_the_lifecycle_module() -> None:
    writes = [w for _, path in modules(*PACKAGES) if path.relative_to(ROOT).as_posix() != LIFECYCLE
              for w in status_writes(path)]
    assert writes == []


@pytest.mark.parametrize("source, expected", [
    ("run.status = RunStatus.FAILED", "assigns .status"),
    ("RUNS.update().values(status='queued')", "values(status=…)"),
    ("ReportRun(schedule_id=1, status=RunStatus.MISSED)", "ReportRun(status=…)"),
    ("rows = [{'run_id': 1, 'status': 'pending'}]", "a row with a status"),
    ("sa.text(\"UPDATE report_run SET error = NULL, status = 'failed'\")", "SQL writes status"),
    ("sa.text('INSERT INTO report_run (schedule_id, status) VALUES (1, 2)')", "SQL writes status"),
])
def test_the_scan_finds_each_kind_of_status_write(tmp_path: Path, source: str, expected: str) -> None:
    path = tmp_path / "writer.py"
    path.write_text(source + "\n")
    assert [w.split(" ", 1)[1] for w in status_writes(path)] == [expected]


def test_the_scan_leaves_reads_and_other_columns_alone(tmp_path: Path) -> None:
    path = tmp_path / "reader.py"
    path.write_text("q = RUNS.update().where(RUNS.c.status == 'running').values(lease_expires_at=1)\n"
                    "schedule.last_status = 'missed'\n"
                    "row = {'status': run.status, 'id': run.id}\n"
                    "sql = 'SELECT status FROM report_run WHERE status = :s'\n")
    assert status_writes(path) == []
