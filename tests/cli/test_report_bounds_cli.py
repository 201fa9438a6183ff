"""`herald report add` refuses a hostile report file in one sentence and at once (an alias
bomb under any key, deep nesting, a file too large, a CSV name that reads backwards), and
`herald export` says in one sentence why it cannot write its output, leaving no partial file."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlmodel import Session

from herald.demo import DEMO_REPORT, write_demo_datasource
from models.db import session_scope
from models.definition import load_definition
from models.reports import Report
from tests.models.test_report_bounds import (
    DEMO_YAML,
    KEYS,
    MB,
    SHORT,
    alias_bomb,
    measured,
    with_value,
)
from tests.seeding import add_tenant, count_rows, save_report

# What the CLI does with a file does not depend on the control database's backend.
pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


@pytest.fixture
def acme(cli) -> None:
    assert cli("tenant", "add", "acme", "--name", "Acme").exit_code == 0


def report_add(cli, path: Path) -> tuple[object, float, float]:
    """(the result, seconds taken, peak MB allocated) of `herald report add --tenant acme path`."""
    return measured(lambda: cli("report", "add", "--tenant", "acme", path))


def one_line_error(result) -> str:
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr) < SHORT, result.stderr
    return result.stderr.removeprefix("error: ").rstrip("\n")


@pytest.mark.parametrize("key", KEYS)
def test_an_alias_bomb_under_any_key_is_refused_at_once(cli, acme, session: Session, tmp_path: Path,
                                                        key: str) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(with_value(key, alias_bomb()))

    result, seconds, peak_mb = report_add(cli, path)

    assert one_line_error(result).startswith(f"{path}: holds more than 20,000 keys and values")
    assert seconds < 1 and peak_mb < 100, (seconds, peak_mb)
    assert count_rows(session, Report) == 0


def test_seven_levels_of_aliases_give_a_short_message(cli, acme, tmp_path: Path) -> None:
    """The message never reprints the value the aliases stand for."""
    path = tmp_path / "seven.yaml"
    path.write_text(with_value("send_if", alias_bomb(levels=7, width=5)))  # 5**7 = 78,125 strings
    assert "holds more than 20,000 keys and values" in one_line_error(report_add(cli, path)[0])


def test_deep_nesting_is_one_sentence(cli, acme, tmp_path: Path) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text("title: " + "[" * 100_000 + "]" * 100_000 + "\n")
    assert one_line_error(report_add(cli, path)[0]) == (
        f"{path}: nests deeper than 20 levels at line 1; a report needs a few, so flatten it.")


def test_a_file_too_large_is_one_sentence(cli, acme, tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    params = "".join(f"  p{i}: {i}\n" for i in range(250_000))
    path.write_text(DEMO_YAML.replace("params:\n", "params:\n" + params))
    assert path.stat().st_size > 4 * MB

    result, seconds, peak_mb = report_add(cli, path)

    assert one_line_error(result) == (f"{path}: is {path.stat().st_size:,} bytes, and a report file "
                                      f"may be at most 1,048,576 bytes; split it into several reports.")
    assert seconds < 1 and peak_mb < 5


def test_a_csv_name_that_reads_backwards_is_refused(cli, acme, session: Session, tmp_path: Path) -> None:
    path = tmp_path / "rlo.yaml"
    path.write_text(DEMO_YAML.replace('"{slug}-{date}.csv"', '"{slug}\\u202egpj.exe"'))
    assert one_line_error(report_add(cli, path)[0]) == (
        f"{path}: csv.filename contains the invisible character U+202E, which can make the name "
        f"read differently (e.g. backwards); write it without it.")
    path.write_text(DEMO_YAML.replace('"{slug}-{date}.csv"', '"{slug}-{date}.html"'))
    assert one_line_error(report_add(cli, path)[0]) == (
        f"{path}: csv.filename ends in .html, and the CSV's name must end in .csv (the XLSX's is "
        f"made from it); write e.g. {{slug}}-{{date}}.csv.")
    assert count_rows(session, Report) == 0


@pytest.fixture
def exportable(db_url: str, tmp_path: Path) -> None:
    """Tenant acme reads the demo's videos; its report is the demo's."""
    data = tmp_path / "videos.db"
    write_demo_datasource(data, rows=50)
    with session_scope() as session:
        save_report(session, add_tenant(session, "acme", "Acme", "UTC", f"sqlite:///{data}"),
                    load_definition(DEMO_REPORT))


def export_csv(cli, output: Path | str):
    return cli("export", "--tenant", "acme", "--report", "video-performance", "--format", "csv",
               "-o", output)


def test_an_output_folder_that_cannot_be_made_is_one_sentence(cli, exportable) -> None:
    assert one_line_error(export_csv(cli, "/proc/nope/x.csv")) == (
        "Cannot write /proc/nope/x.csv (No such file or directory); choose another --output path.")


def test_a_full_device_is_one_sentence(cli, exportable) -> None:
    assert one_line_error(export_csv(cli, "/dev/full")) == (
        "Cannot write /dev/full (No space left on device); choose another --output path.")
    assert Path("/dev/full").is_char_device()  # written to, never replaced


def test_a_failed_write_leaves_no_partial_file(cli, exportable, tmp_path: Path) -> None:
    """The document is copied beside the output and renamed onto it: when the rename fails
    (here the output is a folder), the copy goes."""
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "keep.txt").write_text("kept")
    assert one_line_error(export_csv(cli, folder)) == (
        f"Cannot write {folder} (Is a directory); choose another --output path.")
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")]
    assert [p.name for p in folder.iterdir()] == ["keep.txt"]


def test_an_export_replaces_the_output_whole(cli, exportable, tmp_path: Path) -> None:
    output = tmp_path / "new" / "views.csv"
    assert export_csv(cli, output).exit_code == 0
    output.write_text("old")
    result = export_csv(cli, output)
    assert result.exit_code == 0 and result.stdout.startswith(f"wrote {output} (")
    assert output.read_text().startswith("title,video_url,platform")
    assert sorted(p.name for p in output.parent.iterdir()) == ["views.csv"]
