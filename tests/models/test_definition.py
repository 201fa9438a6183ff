"""Report files: the contract's example parses; each broken file is refused naming
the file, the field and the problem, and `herald report add` writes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from sqlmodel import Session

from models.catalog import count_rows
from models.definition import ChartSection, load_definition
from models.errors import InvalidInput
from models.reports import Report

EXAMPLE = Path(__file__).parents[1] / "fixtures" / "video-performance.yaml"


def test_the_contract_example_parses_into_typed_sections() -> None:
    definition = load_definition(EXAMPLE)
    assert [s.kind for s in definition.sections] == ["kpi", "chart", "table"]
    chart = definition.sections[1]
    assert isinstance(chart, ChartSection) and (chart.chart.x, chart.chart.y) == ("platform", "views")
    assert definition.params == {"campaign": "Campaign A"}
    assert definition.csv.filename == "{slug}-{date}.csv"


def _broken(tmp_path: Path, edit) -> Path:
    data = yaml.safe_load(EXAMPLE.read_text())
    edit(data)
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


BROKEN = [
    pytest.param(lambda d: d["sections"][0].pop("sql"), "sections[0].sql is required",
                 id="missing-sql"),
    pytest.param(lambda d: d["sections"][2].update(kind="pie"),
                 "sections[2].kind must be one of kpi, chart, table (got 'pie')", id="unknown-kind"),
    pytest.param(lambda d: d["sections"][1]["chart"].pop("x"), "sections[1].chart.x is required",
                 id="chart-without-x"),
    pytest.param(lambda d: d["sections"][1]["chart"].pop("y"), "sections[1].chart.y is required",
                 id="chart-without-y"),
    pytest.param(lambda d: d["csv"].update(filename="{slug}-{tenant}.csv"),
                 "csv.filename uses {tenant}; only {slug} and {date} may appear in the filename", id="filename-field"),
    pytest.param(lambda d: d["csv"].pop("sql"), "csv.sql is required", id="csv-without-sql"),
    pytest.param(lambda d: d.pop("params"), "sections[0].sql uses :campaign but params gives it no default; add it to params",
                 id="unbound-parameter"),
    pytest.param(lambda d: d["sections"][1]["chart"].update(mark="pie"),
                 "sections[1].chart.mark Input should be 'bar', 'line', 'area' or 'point'", id="bad-mark"),
    pytest.param(lambda d: d.update(colour="red"), "colour is not a known field", id="typo-field"),
]


@pytest.mark.parametrize(("edit", "message"), BROKEN)
def test_broken_report_files_are_refused_naming_the_field(tmp_path: Path, edit, message: str) -> None:
    path = _broken(tmp_path, edit)
    with pytest.raises(InvalidInput) as refused:
        load_definition(path)
    assert str(refused.value) == f"{path}: {message}."


def test_report_add_writes_nothing_for_a_broken_file(cli, session: Session, tmp_path: Path) -> None:
    assert cli("tenant", "add", "acme", "--name", "Acme").exit_code == 0
    path = _broken(tmp_path, lambda d: d["sections"][1]["chart"].pop("y"))
    result = cli("report", "add", "--tenant", "acme", path)
    assert result.exit_code == 1
    assert result.stderr == f"error: {path}: sections[1].chart.y is required.\n"
    assert count_rows(session, Report) == 0


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("slug: x\ntitle: [unclosed\nsections: []\n")
    with pytest.raises(InvalidInput, match=r"bad.yaml: is not valid YAML at line \d"):
        load_definition(path)
