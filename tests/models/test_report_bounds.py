"""A report file is bounded before it is parsed: its size, its nesting, what its aliases
repeat, and its number of params and sections. Each refusal is one short sentence, made in
well under a second and without building the values an alias bomb would expand to."""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from herald.demo import DEMO_REPORT
from models.definition import MAX_PARAMS, MAX_SECTIONS, load_definition, parse_definition_text
from models.errors import InvalidInput
from models.report_file import MAX_BYTES, MAX_DEPTH, MAX_NODES
from models.reports import Report

DEMO_YAML = DEMO_REPORT.read_text(encoding="utf-8")
SHORT = 300  # characters a refusal may take: it never echoes more than an excerpt
MB = 1024 * 1024
# Every key a report file has, and some inside its sections and csv.
KEYS = ["slug", "title", "params", "sections", "csv", "locale", "period", "send_if", "refresh",
        "unknown"]


def alias_bomb(levels: int = 9, width: int = 9) -> str:
    """Billion laughs in flow style: `width ** levels` strings from about 400 bytes."""
    rows = ["[" + ", ".join(["lol"] * width) + "]"]
    rows += ["[" + ", ".join([f"*a{i}"] * width) + "]" for i in range(levels - 1)]
    return "[" + ", ".join(f"&a{i} {row}" for i, row in enumerate(rows)) + "]"


def with_value(key: str, value: str, base: str = DEMO_YAML) -> str:
    """The demo's report with `key` (top-level) set to the YAML `value`."""
    data = yaml.safe_load(base)
    data[key] = "PLACEHOLDER"
    return yaml.safe_dump(data, sort_keys=False).replace("PLACEHOLDER", value)


def measured(call: Callable[[], object]) -> tuple[object, float, float]:
    """(what `call` returned, or the InvalidInput it raised; seconds taken; peak MB allocated):
    timed, then run again with tracemalloc (which slows it down) for the memory."""
    def once() -> object:
        try:
            return call()
        except InvalidInput as exc:
            return exc

    started = time.perf_counter()
    outcome = once()
    seconds = time.perf_counter() - started
    tracemalloc.start()
    try:
        once()
        return outcome, seconds, tracemalloc.get_traced_memory()[1] / MB
    finally:
        tracemalloc.stop()


def refused(parse: Callable[[], object]) -> tuple[str, float, float]:
    """(the refusal's sentence, seconds taken, peak MB allocated) of a parse that must fail."""
    outcome, seconds, peak = measured(parse)
    assert isinstance(outcome, InvalidInput), f"accepted: {outcome!r:.200}"
    return str(outcome), seconds, peak


def one_sentence(message: str) -> bool:
    return "\n" not in message and message.endswith(".") and len(message) < SHORT


@pytest.mark.parametrize("key", KEYS)
def test_an_alias_bomb_under_any_key_is_refused_at_once(key: str) -> None:
    text = with_value(key, alias_bomb())
    assert len(text) < len(DEMO_YAML) + 600

    message, seconds, peak_mb = refused(lambda: parse_definition_text(text, "bomb.yaml"))

    assert message.startswith("bomb.yaml: holds more than 20,000 keys and values (an alias, *name, "
                              "counts as all it repeats)")
    assert one_sentence(message), message
    assert seconds < 1 and peak_mb < 100, (seconds, peak_mb)


@pytest.mark.parametrize("where", ["section title", "section sql", "csv filename", "param"])
def test_an_alias_bomb_inside_a_section_csv_or_params_is_refused(where: str) -> None:
    bomb = alias_bomb()
    text = {"section title": DEMO_YAML.replace("title: Total views", f"title: {bomb}"),
            "section sql": DEMO_YAML.replace("sql: SELECT platform,", f"sql: {bomb}\n    x: SELECT"),
            "csv filename": DEMO_YAML.replace('filename: "{slug}-{date}.csv"', f"filename: {bomb}"),
            "param": DEMO_YAML.replace("campaign: Campaign A", f"campaign: {bomb}")}[where]
    assert bomb in text

    message, seconds, peak_mb = refused(lambda: parse_definition_text(text, "bomb.yaml"))

    assert "holds more than 20,000 keys and values" in message and one_sentence(message)
    assert seconds < 1 and peak_mb < 100


def test_a_bomb_of_merge_keys_is_refused() -> None:
    """`<<: [*a, *a, ...]` copies the merged pairs: they are counted as aliases are."""
    rows = ["a0: &a0 {" + ", ".join(f"k{i}: lol" for i in range(9)) + "}"]
    rows += [f"a{n}: &a{n} {{<<: [{', '.join([f'*a{n - 1}'] * 9)}], x{n}: 1}}" for n in range(1, 9)]
    text = "merged:\n" + "\n".join(f"  {row}" for row in rows) + "\n" + DEMO_YAML

    message, seconds, peak_mb = refused(lambda: parse_definition_text(text, "merge.yaml"))

    assert "holds more than 20,000 keys and values" in message
    assert seconds < 1 and peak_mb < 100


def test_an_alias_inside_its_own_anchor_is_refused() -> None:
    message, _, _ = refused(lambda: parse_definition_text(with_value("send_if", "&loop [*loop]"), "r.yaml"))
    assert message.startswith("r.yaml: has an alias inside the value it names (line ")
    assert one_sentence(message)


def test_aliases_that_repeat_little_are_fine() -> None:
    text = DEMO_YAML.replace("campaign: Campaign A", "campaign: &campaign Campaign A\n  again: *campaign")
    assert parse_definition_text(text).params == {"campaign": "Campaign A", "again": "Campaign A"}


@pytest.mark.parametrize("opening", ["[", "{a: ", "- "], ids=["flow-lists", "flow-maps", "block-lists"])
def test_deep_nesting_is_one_sentence_not_a_traceback(opening: str) -> None:
    text = (opening * 100_000 if opening != "- " else
            "".join(" " * (2 * i) + "- \n" for i in range(500)))

    message, seconds, _ = refused(lambda: parse_definition_text(text, "deep.yaml"))

    assert message.startswith(f"deep.yaml: nests deeper than {MAX_DEPTH} levels at line ")
    assert message.endswith("; a report needs a few, so flatten it.") and one_sentence(message)
    assert seconds < 2


def test_aliases_that_nest_deeper_once_repeated_are_refused() -> None:
    chain = "&d0 [1]" + "".join(f", &d{i} [*d{i - 1}]" for i in range(1, MAX_DEPTH + 2))
    message, _, _ = refused(lambda: parse_definition_text(with_value("title", f"[{chain}]"), "r.yaml"))
    assert message == (f"r.yaml: nests deeper than {MAX_DEPTH} levels; a report needs a few, so "
                       f"flatten it.")


def test_many_plain_values_are_refused_as_an_alias_bomb_is() -> None:
    text = with_value("title", "[" + ", ".join(["1"] * (MAX_NODES + 1)) + "]")
    message, seconds, peak_mb = refused(lambda: parse_definition_text(text, "many.yaml"))
    assert "holds more than 20,000 keys and values" in message
    assert seconds < 2 and peak_mb < 100


def test_text_over_the_size_limit_is_refused_before_it_is_parsed() -> None:
    text = DEMO_YAML + "# " + "x" * MAX_BYTES + "\n"
    message, seconds, _ = refused(lambda: parse_definition_text(text, "big.yaml"))
    assert message == (f"big.yaml: is {len(text.encode()):,} bytes, and a report file may be at most "
                       f"1,048,576 bytes; split it into several reports.")
    assert seconds < 0.5


def test_a_file_over_the_size_limit_is_read_no_further(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text(DEMO_YAML + "# " + "x" * (50 * MB) + "\n")

    message, seconds, peak_mb = refused(lambda: load_definition(path))

    assert message == (f"{path}: is {path.stat().st_size:,} bytes, and a report file may be at most "
                       f"1,048,576 bytes; split it into several reports.")
    assert seconds < 0.5 and peak_mb < 5


def test_a_file_just_under_the_limit_is_read(tmp_path: Path) -> None:
    path = tmp_path / "long-sql.yaml"
    path.write_text(DEMO_YAML.replace("LIMIT 50", "LIMIT 50 --" + "x" * (MAX_BYTES - len(DEMO_YAML) - 20)))
    assert path.stat().st_size <= MAX_BYTES
    assert load_definition(path).slug == "video-performance"


def test_a_file_that_is_not_utf8_is_one_sentence(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("title: Caf\xe9\n".encode("latin-1"))
    assert refused(lambda: load_definition(path))[0] == f"{path}: is not UTF-8 text; save it as UTF-8."


@pytest.mark.parametrize("value", ["1" * 5000, "2001-13-45"], ids=["huge-integer", "bad-date"])
def test_a_number_or_date_python_cannot_hold_is_one_sentence(value: str) -> None:
    message, _, _ = refused(lambda: parse_definition_text(with_value("title", value), "r.yaml"))
    assert message == "r.yaml: holds a number or date herald cannot read; quote it, or write a smaller one."


def test_too_many_params_are_refused_naming_the_limit() -> None:
    params = "{" + ", ".join(f"p{i}: {i}" for i in range(MAX_PARAMS + 1)) + "}"
    message, _, _ = refused(lambda: parse_definition_text(with_value("params", params), "r.yaml"))
    assert message == (f"r.yaml: params has {MAX_PARAMS + 1} entries, and a report may have at most "
                       f"{MAX_PARAMS}; remove the ones no query uses.")


def test_too_many_sections_are_refused_naming_the_limit() -> None:
    section = "{kind: kpi, title: Total, sql: SELECT 1 AS value}"
    sections = "[" + ", ".join([section] * (MAX_SECTIONS + 1)) + "]"
    message, _, _ = refused(lambda: parse_definition_text(with_value("sections", sections), "r.yaml"))
    assert message == (f"r.yaml: sections has {MAX_SECTIONS + 1} entries, and a report may have at "
                       f"most {MAX_SECTIONS}; split the report into several.")


def test_the_most_params_and_sections_a_report_may_have_are_accepted() -> None:
    params = "{campaign: A, " + ", ".join(f"p{i}: {i}" for i in range(MAX_PARAMS - 1)) + "}"
    section = "{kind: chart, title: T, sql: 'SELECT 1 AS a, 2 AS b', chart: {mark: bar, x: a, y: b, color: a}}"
    sections = "[" + ", ".join([section] * MAX_SECTIONS) + "]"
    definition = parse_definition_text(with_value("sections", sections, with_value("params", params)))
    assert (len(definition.params), len(definition.sections)) == (MAX_PARAMS, MAX_SECTIONS)


@pytest.mark.parametrize(("key", "value"), [
    ("send_if", "[" + ", ".join(["[x, y, z, w]"] * 2000) + "]"),
    ("slug", "x" * 100_000),
    ("period", "x" * 100_000),
    ("locale", "x" * 100_000),
    ("refresh", "[" + "x" * 100_000 + "]"),
    ("x" * 100_000, "1"),
    ("sections", "[{kind: " + "x" * 100_000 + ", title: T, sql: SELECT 1}]"),
    ("sections", "[{kind: kpi, title: " + "x" * 100_000 + ", sql: SELECT 1, " + "y" * 100_000 + ": 1}]"),
    ("csv", "{sql: SELECT :" + "p" * 100_000 + "}"),
], ids=["send_if", "slug", "period", "locale", "refresh", "unknown-key", "kind", "section-title",
        "bind-name"])
def test_a_refusal_quotes_only_an_excerpt_of_what_was_sent(key: str, value: str) -> None:
    message, _, _ = refused(lambda: parse_definition_text(with_value(key, value), "r.yaml"))
    assert one_sentence(message), message


def test_a_stored_definition_is_not_refused_by_checks_newer_than_it() -> None:
    """A CSV name saved before foreign endings and format characters were refused still runs:
    the attachment's name is made plain where it is built."""
    data = yaml.safe_load(DEMO_YAML)
    data["csv"]["filename"] = "{slug}\u202egpj.exe"
    report = Report(tenant_id=1, slug=data["slug"], title=data["title"], definition=data)
    assert report.parsed().csv.filename == "{slug}\u202egpj.exe"
