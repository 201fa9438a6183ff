"""The report-definition format (YAML) as typed, validated objects.

A definition names SQL per section; parameters are bound as `:name`, never
formatted in. Errors name the file, the field and the problem.
"""

from __future__ import annotations

import re
import string
from pathlib import Path
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from babel import Locale
from babel.core import UnknownLocaleError
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from models.errors import InvalidInput
from models.periods import PARAM_NAMES as PERIOD_PARAMS
from models.periods import PERIOD_KINDS
from models.report_file import read_report_file, read_report_text
from models.text import (
    NOT_ONE_LINE,
    excerpt,
    first_invisible_character,
    has_control_character,
    short_text,
)

SLUG_PATTERN = r"^[a-z0-9][a-z0-9-]{0,63}$"
SLUG_RULE = "use lowercase letters, digits and hyphens, starting with a letter or digit (at most 64)"
FILENAME_FIELDS = ("slug", "date")
CSV_EXTENSION = ".csv"
MAX_PARAMS = 100
MAX_SECTIONS = 200
MAX_MESSAGE = 300  # characters of a refusal: it quotes what was sent in excerpts only
Scalar = str | int | float | bool | None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ChartSpec(_Strict):
    """How a chart section maps its columns to a Vega-Lite mark.

    `x` is the category (or time), `y` the number. `color` splits the rows into series,
    stacked for bar and area unless `stack: false` (then bars stand side by side and
    areas overlap). A `pie` (or `arc`) takes its slices' names from `x` and sizes from `y`.
    """

    mark: Literal["bar", "line", "area", "point", "pie", "arc"] = "bar"
    x: str = Field(min_length=1)
    y: str = Field(min_length=1)
    color: str | None = None
    stack: bool = True

    @model_validator(mode="after")
    def _pie_has_no_series(self) -> ChartSpec:
        if self.mark in ("pie", "arc") and self.color:
            raise ValueError(f"color is not used by a {self.mark}: x names its slices; remove color")
        return self


class _Section(_Strict):
    title: str = Field(min_length=1, max_length=200)
    sql: str = Field(min_length=1)

    @field_validator("sql")
    @classmethod
    def _not_blank(cls, sql: str) -> str:
        if not sql.strip():
            raise ValueError("must contain a SQL query")
        return sql


class KpiSection(_Section):
    """One number: the first row's `column` (default `value`)."""

    kind: Literal["kpi"]
    column: str = "value"

    def required_columns(self) -> list[str]:
        return [self.column]


class ChartSection(_Section):
    kind: Literal["chart"]
    chart: ChartSpec

    def required_columns(self) -> list[str]:
        return [c for c in (self.chart.x, self.chart.y, self.chart.color) if c]


class TableSection(_Section):
    """A paginated table; `max_rows` caps what the PDF shows (the CSV has no cap)."""

    kind: Literal["table"]
    max_rows: int | None = Field(default=None, ge=1, le=100_000)

    def required_columns(self) -> list[str]:
        return []


Section = Annotated[KpiSection | ChartSection | TableSection, Field(discriminator="kind")]

SEND_IF_WORDS = ("always", "rows")
# A materialized view as `refresh:` names it: `name` or `schema.name`, plain identifiers.
VIEW_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,62}(\.[A-Za-z_][A-Za-z0-9_$]{0,62})?$")


class RowsCondition(_Strict):
    """Send only when the named section returned rows."""

    rows: str = Field(min_length=1)


class SqlCondition(_Strict):
    """An alert: send only when the query's first row says `send` is true."""

    sql: str = Field(min_length=1)


SendIf = Literal["always", "rows"] | RowsCondition | SqlCondition


class CsvSpec(_Strict):
    sql: str = Field(min_length=1)
    filename: str = "{slug}-{date}.csv"

    @field_validator("filename")
    @classmethod
    def _plain_file_name(cls, filename: str, info: ValidationInfo) -> str:
        if has_control_character(filename):
            raise ValueError(NOT_ONE_LINE)
        # Saved before these two checks existed: the attachment's name is made plain instead.
        stored = bool(info.context and info.context.get("stored"))
        invisible = first_invisible_character(filename)
        if invisible and not stored:
            raise ValueError(f"contains the invisible character {invisible}, which can make the "
                             f"name read differently (e.g. backwards); write it without it")
        placeholders = _placeholders(filename)
        unknown = sorted({name for name, _, _ in placeholders if name not in FILENAME_FIELDS})
        if unknown:
            raise ValueError(
                f"uses {{{unknown[0]}}}; only {{slug}} and {{date}} may appear in the filename"
            )
        for name, conversion, spec in placeholders:
            if conversion or spec:
                written = name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "")
                raise ValueError(f"uses {{{written}}}; write {{{name}}} without a format spec or conversion")
        if "/" in filename or "\\" in filename:
            raise ValueError("must be a file name, not a path")
        filled = filename.format(slug="slug", date="2000-01-01")
        if not filled.strip(" ."):
            raise ValueError("names no file (it is empty, '.' or '..' once filled in); "
                             "write e.g. {slug}-{date}.csv")
        ending = filled.rpartition(".")[2] if "." in filled.strip(" .") else None
        if ending is not None and f".{ending}".lower() != CSV_EXTENSION and not stored:
            raise ValueError(f"ends in {short_text('.' + ending, 20)}, and the CSV's name must end in "
                             f".csv (the XLSX's is made from it); write e.g. {{slug}}-{{date}}.csv")
        return filename


def _placeholders(template: str) -> list[tuple[str, str | None, str]]:
    """Each `{...}` of a `str.format` template as (field name, conversion, format spec)."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"is not a valid template ({exc})") from None
    return [(name, conversion, spec) for _, name, spec, conversion in parsed if name is not None]


def is_slug(text: str) -> bool:
    """True when all of `text` is a slug (a trailing newline is not accepted)."""
    return re.fullmatch(SLUG_PATTERN, text) is not None


class ReportDefinition(_Strict):
    """A saved report: parameters, sections for the PDF, and the CSV query."""

    slug: str
    title: str = Field(min_length=1, max_length=200)
    params: dict[str, Scalar] = Field(default_factory=dict)
    sections: list[Section] = Field(default_factory=list)
    csv: CsvSpec | None = None
    locale: str = "en"  # how numbers and month names read: 62,794,765 (en), 62 794 765 (fr)
    # What :period_start/:period_end cover; None lets the schedule decide (daily → previous_day).
    period: str | None = None
    # When a run sends: always; when the CSV query (or a named section) returned rows; or when
    # an alert query's first row has send = true. Otherwise the run ends SKIPPED.
    send_if: SendIf = "always"
    # Materialized views refreshed before the queries, through the tenant's refresh data source.
    refresh: list[str] = Field(default_factory=list, max_length=20)

    @field_validator("send_if", mode="before")
    @classmethod
    def _known_condition(cls, value: Any) -> Any:
        if isinstance(value, str) and value in SEND_IF_WORDS:
            return value
        if isinstance(value, dict) and len(value) == 1 and set(value) <= {"rows", "sql"}:
            (key, text), = value.items()
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f"{key} must be {'a section title' if key == 'rows' else 'a SQL query'}")
            return value
        raise ValueError(f"{excerpt(value)} is not a condition herald knows; write always, rows, "
                         f"{{rows: <section title>}} or {{sql: SELECT … AS send}}")

    @field_validator("refresh")
    @classmethod
    def _view_names(cls, names: list[str]) -> list[str]:
        for name in names:
            if not isinstance(name, str) or not VIEW_NAME.fullmatch(name):
                raise ValueError(f"{excerpt(name)} is not a materialized view name; write it as name or "
                                 f"schema.name (letters, digits and _)")
        return names

    @field_validator("period")
    @classmethod
    def _known_period(cls, period: str | None) -> str | None:
        if period is not None and period not in PERIOD_KINDS:
            raise ValueError(f"{excerpt(period)} is not a period herald knows; use one of "
                             f"{', '.join(PERIOD_KINDS)}")
        return period

    @field_validator("locale")
    @classmethod
    def _known_locale(cls, locale: str) -> str:
        return str(babel_locale(locale))

    @field_validator("slug")
    @classmethod
    def _valid_slug(cls, slug: str) -> str:
        if not is_slug(slug):
            raise ValueError(f"{excerpt(slug)} is not valid; {SLUG_RULE}")
        return slug

    @field_validator("title")
    @classmethod
    def _one_line_title(cls, title: str) -> str:
        if has_control_character(title):
            raise ValueError(NOT_ONE_LINE)
        return title

    @model_validator(mode="after")
    def _has_content_and_known_params(self) -> ReportDefinition:
        if not self.sections and self.csv is None:
            raise ValueError("a report needs at least one section or a csv query")
        if self.send_if == "rows" and self.csv is None:
            raise ValueError("send_if: rows means the csv query returned rows, and this report has no "
                             "csv query; name a section instead, e.g. send_if: {rows: <section title>}")
        if isinstance(self.send_if, RowsCondition):
            titles = [section.title for section in self.sections]
            if self.send_if.rows not in titles:
                named = ", ".join(excerpt(title, 40) for title in titles[:5]) + (", …" if titles[5:] else "")
                raise ValueError(f"send_if.rows names {excerpt(self.send_if.rows)}, which is not a "
                                 f"section title; use one of {named or 'none (add a section)'}")
        for where, sql in self.queries():
            if self.period == "none" and bind_names(sql) & set(PERIOD_PARAMS):
                raise ValueError(f"{where} uses :period_start or :period_end but period is none; "
                                 f"remove `period: none` or the parameter")
            missing = sorted(bind_names(sql) - set(self.params) - set(PERIOD_PARAMS))
            if missing:
                raise ValueError(
                    f"{where} uses :{short_text(missing[0])} but params gives it no default; "
                    f"add it to params"
                )
        return self

    def uses_period(self) -> bool:
        """True when some query binds :period_start or :period_end (the report covers a period)."""
        return any(bind_names(sql) & set(PERIOD_PARAMS) for _, sql in self.queries())

    def queries(self) -> list[tuple[str, str]]:
        """Each query with the field path that holds it."""
        found = [(f"{section_name(i, section.title)}.sql", section.sql)
                 for i, section in enumerate(self.sections)]
        if self.csv is not None:
            found.append(("csv.sql", self.csv.sql))
        if isinstance(self.send_if, SqlCondition):
            found.append(("send_if.sql", self.send_if.sql))
        return found


def babel_locale(code: str) -> Locale:
    """The Babel locale for `en`, `fr`, `pt-BR` or `pt_BR`; ValueError in one sentence otherwise."""
    try:
        locale = Locale.parse(code.replace("-", "_"))
    except (UnknownLocaleError, ValueError, TypeError):
        locale = None
    # Babel falls back for some parts it does not know (en-ZZZZ reads as en_US): refuse those too.
    if locale is None or str(locale).lower() != code.replace("-", "_").lower():
        raise ValueError(f"{excerpt(code)} is not a locale herald knows; use a code such as en, fr, "
                         f"de or ru")
    return locale


def section_name(index: int, title: Any = None) -> str:
    """The section at `index` (from 0) as every message names it: counted from one, with its
    title when it has one, `section 2 ("Revenue by day")`."""
    named = f"section {index + 1}"
    return f'{named} ("{short_text(title)}")' if isinstance(title, str) and title else named


def bind_names(sql: str) -> set[str]:
    """The `:name` parameters a query binds, as SQLAlchemy's `text()` reads them."""
    return set(sa.text(sql).compile().params)


def _field_path(loc: tuple[Any, ...], data: dict[str, Any]) -> str:
    path = ""
    for i, part in enumerate(loc):
        if i == 1 and loc[0] == "sections" and isinstance(part, int):
            section = data["sections"][part] if isinstance(data.get("sections"), list) else None
            path = section_name(part, section.get("title") if isinstance(section, dict) else None)
        elif isinstance(part, int):
            path += f"[{part}]"
        elif i and isinstance(loc[i - 1], int) and part in ("kpi", "chart", "table"):
            continue  # pydantic names the union member here; the user wrote no such key
        else:
            part = short_text(str(part))  # a key the user wrote: it may be any length
            path += f".{part}" if path else part
    return path


def _describe(error: dict[str, Any]) -> str:
    if error["type"] == "missing":
        return "is required"
    if error["type"] == "union_tag_not_found":
        return "is required (one of kpi, chart, table)"
    if error["type"] == "union_tag_invalid":
        kind = error["input"].get("kind") if isinstance(error["input"], dict) else None
        return f"must be one of kpi, chart, table (got {excerpt(kind)})"
    if error["type"] == "extra_forbidden":
        return "is not a known field"
    return error["msg"].removeprefix("Value error, ")


def parse_definition(data: Any, source: str = "report") -> ReportDefinition:
    """Validate already-loaded data, raising `InvalidInput` naming source, field and problem."""
    if not isinstance(data, dict):
        raise InvalidInput(f"{source}: a report file must be a YAML mapping with slug, title and sections.")
    _check_counts(data, source)
    try:
        return ReportDefinition.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        loc = tuple(error["loc"])
        if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
            loc = (*loc, "kind")
        where = _field_path(loc, data)
        # Model-level checks already name the field in their message.
        sentence = f"{where + ' ' if where else ''}{_describe(error)}"
        raise InvalidInput(f"{source}: {short_text(sentence, MAX_MESSAGE)}.") from None


def _check_counts(data: dict[str, Any], source: str) -> None:
    """Refuse more params or sections than a report may have, before any is validated."""
    for key, most, fix in (("params", MAX_PARAMS, "remove the ones no query uses"),
                           ("sections", MAX_SECTIONS, "split the report into several")):
        if isinstance(data.get(key), dict | list) and len(data[key]) > most:
            raise InvalidInput(f"{source}: {key} has {len(data[key]):,} entries, and a report may "
                               f"have at most {most}; {fix}.")


def parse_definition_text(text: str, source: str = "report") -> ReportDefinition:
    """Parse and validate report YAML text (within `models.report_file`'s bounds: its size, its
    nesting and what its aliases repeat); errors name `source` (a file name) and the field."""
    return parse_definition(read_report_text(text, source), source=source)


def load_definition(path: str | Path) -> ReportDefinition:
    """Read and validate a report YAML file (at most `models.report_file.MAX_BYTES` of it)."""
    path = Path(path)
    return parse_definition_text(read_report_file(path), source=str(path))
