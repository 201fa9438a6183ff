"""CSV neutralisation covers every type whose text a spreadsheet could run, and leaves
numbers, dates and booleans as they are."""

from __future__ import annotations

import csv
import io

import psycopg
import pytest

from renderers.csv_export import export_csv
from tenantdb import FORMULA_STARTS

# OWASP's formula starts (= + - @ tab CR) plus LF, and a harmless value.
PAYLOADS = ["=HYPERLINK(\"http://x\")", "+1 555", "-2+3", "@SUM(A1)", "\tcmd", "\rcmd", "\ncmd", "plain"]


@pytest.fixture
def typed_db(create_tenant_database) -> str:
    db = create_tenant_database()
    with psycopg.connect(db.admin_url.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION citext")
        conn.execute("CREATE TYPE mood AS ENUM ('=1+2', '-sad', 'ok')")
        conn.execute("CREATE DOMAIN label AS text")
        conn.execute("""CREATE TABLE cells (id int, t text, vc varchar(40), ch char(30), nm name,
            ci citext, lb label, js json, jb jsonb, x xml, m mood,
            n int, big numeric, f float8, cash money, d date, ok boolean)""")
        for i, payload in enumerate(PAYLOADS):
            conn.execute(
                """INSERT INTO cells VALUES (%s, %s, %s, %s, %s, %s, %s, %s::json, %s::jsonb,
                   xmlparse(content %s), %s, %s, %s, %s, %s::numeric::money, '2026-01-02', %s)""",
                [i, payload, payload, payload, payload, payload, payload,
                 "-1" if i == 2 else '{"a": 1}', "-2" if i == 3 else '"s"',
                 payload if i < 4 else "plain", ["=1+2", "-sad", "ok"][i % 3],
                 -i, -i - 0.5, -1.25 * i, -i, i % 2 == 0])
    return db.url


def exported(url: str, sql: str) -> list[dict[str, str]]:
    buffer = io.BytesIO()
    export_csv(url, sql, {}, buffer, timeout_s=30, max_bytes=10**6)
    return list(csv.DictReader(io.StringIO(buffer.getvalue().decode(), newline="")))


def test_every_text_like_type_is_neutralised_and_numbers_stay_numbers(typed_db: str) -> None:
    rows = exported(typed_db, "SELECT * FROM cells ORDER BY id")
    with psycopg.connect(typed_db.replace("+psycopg", "")) as conn:
        casts = ", ".join(f"{c}::text" for c in rows[0])
        source = [dict(zip(rows[0], r, strict=True))
                  for r in conn.execute(f"SELECT {casts} FROM cells ORDER BY id").fetchall()]
    text_like = ["t", "vc", "ch", "nm", "ci", "lb", "js", "jb", "x", "m"]
    kept = ["id", "n", "big", "f", "cash", "d", "ok"]
    neutralised = 0
    for got, want in zip(rows, source, strict=True):
        for column in text_like:
            value = want[column]
            expected = "'" + value if value[:1] in FORMULA_STARTS else value
            neutralised += expected != value
            if column == "ch":  # char(n) is padded; the padding is not the point here
                assert got[column].rstrip(" ") == expected.rstrip(" "), (column, value)
            else:
                assert got[column] == expected, (column, value)
        for column in kept:  # negative numbers, money and dates exactly as PostgreSQL writes them
            assert got[column] == (want[column] if column != "ok" else want[column][0]), column
    assert neutralised >= 45
    assert any(r["n"].startswith("-") for r in rows) and any(r["cash"].startswith("-") for r in rows)
