"""Report files: the contract's example parses; each broken file is refused naming
the file, the field and the problem, and `herald report add` writes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError
from sqlmodel import Session

from models.definition import ChartSection, ReportDefinition, load_definition, parse_definition
from models.errors import InvalidInput
from models.reports import Report
from tests.seeding import count_rows

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
    pytest.param(lambda d: d["sections"][0].pop("sql"), 'section 1 ("Total views").sql is required',
                 id="missing-sql"),
    pytest.param(lambda d: d["sections"][2].update(kind="pie"),
                 """section 3 ("Top videos").kind must be one of kpi, chart, table (got 'pie')""",
                 id="unknown-kind"),
    pytest.param(lambda d: d["sections"][1]["chart"].pop("x"),
                 'section 2 ("Views by platform").chart.x is required', id="chart-without-x"),
    pytest.param(lambda d: d["sections"][1]["chart"].pop("y"),
                 'section 2 ("Views by platform").chart.y is required', id="chart-without-y"),
    pytest.param(lambda d: d["csv"].update(filename="{slug}-{tenant}.csv"),
                 "csv.filename uses {tenant}; only {slug} and {date} may appear in the filename", id="filename-field"),
    pytest.param(lambda d: d["csv"].pop("sql"), "csv.sql is required", id="csv-without-sql"),
    pytest.param(lambda d: d.pop("params"),
                 'section 1 ("Total views").sql uses :campaign but params gives it no default; '
                 "add it to params", id="unbound-parameter"),
    pytest.param(lambda d: d["sections"][1]["chart"].update(mark="donut"),
                 """section 2 ("Views by platform").chart.mark Input should be 'bar', 'line', """
                 """'area', 'point', 'pie' or 'arc'""", id="bad-mark"),
    pytest.param(lambda d: d.update(colour="red"), "colour is not a known field", id="typo-field"),
    pytest.param(lambda d: d.update(slug="video-performance\n"),
                 "slug 'video-performance\\n' is not valid; use lowercase letters, digits and hyphens, "
                 "starting with a letter or digit (at most 64)", id="slug-trailing-newline"),
    pytest.param(lambda d: d.update(title="Views\r\nBcc: x@evil.example"),
                 "title contains a line break or control character; write it on one line", id="title-newline"),
    pytest.param(lambda d: d["csv"].update(filename="{slug:>2000000000}"),
                 "csv.filename uses {slug:>2000000000}; write {slug} without a format spec or conversion",
                 id="filename-format-spec"),
    pytest.param(lambda d: d["csv"].update(filename="{date!r}.csv"),
                 "csv.filename uses {date!r}; write {date} without a format spec or conversion",
                 id="filename-conversion"),
    pytest.param(lambda d: d["csv"].update(filename="{slug:{date}}.csv"),
                 "csv.filename uses {slug:{date}}; write {slug} without a format spec or conversion",
                 id="filename-nested-spec"),
    pytest.param(lambda d: d["csv"].update(filename="../{slug}.csv"),
                 "csv.filename must be a file name, not a path", id="filename-path"),
    pytest.param(lambda d: d["csv"].update(filename="{slug}\n.csv"),
                 "csv.filename contains a line break or control character; write it on one line",
                 id="filename-newline"),
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
    assert result.stderr == f'error: {path}: section 2 ("Views by platform").chart.y is required.\n'
    assert count_rows(session, Report) == 0


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("slug: x\ntitle: [unclosed\nsections: []\n")
    with pytest.raises(InvalidInput, match=r"bad.yaml: is not valid YAML at line \d"):
        load_definition(path)


@pytest.mark.parametrize("filename", ["", ".", "..", " . "])
def test_a_csv_filename_must_name_a_file(filename: str) -> None:
    data = yaml.safe_load(EXAMPLE.read_text())
    data["csv"]["filename"] = filename
    with pytest.raises(InvalidInput) as refused:
        parse_definition(data)
    assert str(refused.value) == ("report: csv.filename names no file (it is empty, '.' or '..' once "
                                  "filled in); write e.g. {slug}-{date}.csv.")


@pytest.mark.parametrize("filename", ["{slug}-{date}.csv", "export.csv", "{slug}..{date}.csv", "{{slug}}.csv"])
def test_plain_csv_filenames_are_accepted(filename: str) -> None:
    data = yaml.safe_load(EXAMPLE.read_text())
    data["csv"]["filename"] = filename
    assert parse_definition(data).csv.filename == filename


def test_a_slug_with_a_trailing_newline_is_refused_by_the_model_itself() -> None:
    """`$` in a Python regex matches before a final newline; the slug must match in full."""
    data = yaml.safe_load(EXAMPLE.read_text())
    with pytest.raises(ValidationError, match="is not valid"):
        ReportDefinition.model_validate({**data, "slug": "video-performance\n"})
    assert ReportDefinition.model_validate(data).slug == "video-performance"


CONTROL_CHARACTERS = ["\n", "\r", "\t", "\x00", "\x0b", "\x0c", "\x1b", "\x1f", "\x7f", "\x85",
                      "\x9f", "\u2028", "\u2029"]


@pytest.mark.parametrize("character", CONTROL_CHARACTERS, ids=[hex(ord(c)) for c in CONTROL_CHARACTERS])
def test_a_title_with_a_control_character_is_refused(character: str) -> None:
    data = yaml.safe_load(EXAMPLE.read_text())
    with pytest.raises(InvalidInput) as refused:
        parse_definition({**data, "title": f"Views{character}weekly"})
    assert str(refused.value) == "report: title contains a line break or control character; write it on one line."


def test_a_title_may_hold_any_printable_text() -> None:
    data = yaml.safe_load(EXAMPLE.read_text())
    title = "Просмотры — «weekly» \u00a0📈 100%"
    assert parse_definition({**data, "title": title}).title == title
