"""What the tenant SQL boundary costs per report: a three-section report's queries through
herald (pooled connection, read-only transaction, role check, one-statement protocol,
reset afterwards) against the same three queries on one plain psycopg connection.

    python bench/tenantdb.py [--reports 300] [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg  # noqa: E402

from bench._common import create_database, create_reader, drop_database  # noqa: E402

SECTIONS = [
    ("kpi", "SELECT sum(views) AS value FROM videos WHERE campaign_tag = 'Campaign A'"),
    ("chart", "SELECT platform, sum(views) AS views FROM videos GROUP BY platform ORDER BY 1"),
    ("table", "SELECT title, platform, views FROM videos ORDER BY views DESC LIMIT 50"),
]


def populate(admin_url: str) -> None:
    with psycopg.connect(admin_url) as conn:
        conn.execute("""CREATE TABLE videos AS SELECT i AS id, 'Video ' || i AS title,
            (ARRAY['tiktok', 'youtube', 'vk'])[1 + i % 3] AS platform,
            CASE WHEN i % 2 = 0 THEN 'Campaign A' ELSE 'Campaign B' END AS campaign_tag,
            (i * 7919) % 100003 AS views FROM generate_series(1, 10000) AS i""")
        conn.execute("ANALYZE videos")


def herald(url: str, reports: int) -> float:
    from models.definition import parse_definition
    from pipeline.query import query_sections

    definition = parse_definition({"slug": "r", "title": "R", "sections": [
        {"kind": kind, "title": kind, "sql": sql, **({"chart": {"x": "platform", "y": "views"}}
                                                   if kind == "chart" else {})}
        for kind, sql in SECTIONS]})
    started = time.perf_counter()
    for _ in range(reports):
        query_sections(url, definition, {})
    return time.perf_counter() - started


def raw(url: str, reports: int) -> float:
    with psycopg.connect(url.replace("+psycopg", "")) as conn:
        started = time.perf_counter()
        for _ in range(reports):
            for _, sql in SECTIONS:
                conn.execute(sql).fetchall()
            conn.rollback()
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    name, admin = create_database()
    try:
        populate(admin.replace("+psycopg", ""))
        url = create_reader(name)
        herald(url, 10), raw(url, 10)  # warm: pool, imports, plans
        runs = {"herald": [], "raw": []}
        for _ in range(args.repeat):
            runs["herald"].append(herald(url, args.reports))
            runs["raw"].append(raw(url, args.reports))
    finally:
        drop_database(name)
    medians = {k: statistics.median(v) / args.reports * 1000 for k, v in runs.items()}
    print(f"{args.reports} reports of {len(SECTIONS)} queries over 10,000 rows, median of {args.repeat}")
    print(f"  herald query stage (boundary): {medians['herald']:.2f} ms per report")
    print(f"  plain psycopg, one connection: {medians['raw']:.2f} ms per report")
    print(f"  boundary overhead: {medians['herald'] - medians['raw']:.2f} ms per report "
          f"({medians['herald'] / medians['raw']:.2f}x)")


if __name__ == "__main__":
    main()
