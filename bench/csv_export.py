"""CSV and XLSX export of 1,000,000 rows × 12 columns (seed 002's columns) from PostgreSQL.

(herald) renderers.csv_export: COPY with formula neutralisation done by the server.
(raw)    psycopg COPY (…) TO STDOUT WITH (FORMAT csv, HEADER), nothing else.
(seed)   seed 002's method: LIMIT/OFFSET pages of 1,000 rows through csv.writer. Its
         cost grows with the square of the rows, so it runs until --seed-seconds and
         reports how far it got.
(xlsx-herald) renderers.xlsx_export: rows streamed through the tenant boundary into
         XlsxWriter's constant_memory mode, typed cells, timestamps in the tenant's zone.
(xlsx-raw) XlsxWriter alone in constant_memory mode, `write_row` per row, fed by a plain
         psycopg cursor's `stream()`; options that keep text as text, timezones dropped.
Each method runs in its own process; peak RSS is that process's maximum. raw and herald
(and xlsx-raw and xlsx-herald) alternate --repeat times and report their median run.

    python bench/csv_export.py [--rows 1000000] [--seed-seconds 120] [--repeat 5]
                               [--only csv|xlsx] [--xlsx-repeat 3]
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg  # noqa: E402

from bench._common import create_database, create_reader, drop_database  # noqa: E402

COLUMNS = ["title", "video_url", "platform", "status", "campaign_tag", "channel_username",
           "published_at", "created_at", "views", "likes", "comments", "reposts"]
QUERY = f"SELECT {', '.join(COLUMNS)} FROM videos ORDER BY id"
ZONE = ZoneInfo("Europe/Berlin")  # the tenant's timezone, for the XLSX's timestamps


def populate(libpq_url: str, rows: int) -> None:
    with psycopg.connect(libpq_url) as conn:
        conn.execute("""CREATE TABLE videos (id bigint PRIMARY KEY, title text, video_url text,
            platform text, status text, campaign_tag text, channel_username text, published_at date,
            created_at timestamptz, views bigint, likes bigint, comments bigint, reposts bigint)""")
        # One title in 50 looks like a formula, so neutralising has work to do.
        conn.execute("""INSERT INTO videos SELECT i,
                CASE WHEN i %% 50 = 0 THEN '=SUM(A' || i || ')' ELSE 'Video number ' || i END,
                'https://videos.example.com/watch/' || i,
                (ARRAY['tiktok','youtube','instagram','vk'])[1 + i %% 4],
                CASE WHEN i %% 9 = 0 THEN 'archived' ELSE 'active' END,
                'Campaign ' || chr((65 + i %% 5)::int), '@creator' || (i %% 997),
                date '2025-01-01' + (i %% 600)::int, timestamptz '2025-01-01' + i * interval '37 seconds',
                (i * 7919) %% 5000000, (i * 31) %% 100000, i %% 5000, i %% 700
            FROM generate_series(1::bigint, %s) AS i""", (rows,))
        conn.execute("ANALYZE videos")


def xlsx_child(method: str, url: str, target: Path) -> int:
    """Write the rows to the workbook `target` one way or the other; returns the row count."""
    if method == "xlsx-herald":
        from renderers.xlsx_export import export_xlsx

        return export_xlsx(url, QUERY, {}, target, zone=ZONE, timeout_s=3600)
    import xlsxwriter

    book = xlsxwriter.Workbook(str(target), {
        "constant_memory": True, "strings_to_formulas": False, "strings_to_urls": False,
        "remove_timezone": True, "default_date_format": "yyyy-mm-dd hh:mm:ss"})
    sheet = book.add_worksheet("Data")
    sheet.write_row(0, 0, COLUMNS)
    rows = 0
    with psycopg.connect(url.replace("+psycopg", "")) as conn:
        for rows, row in enumerate(conn.cursor().stream(QUERY, size=2000), 1):
            sheet.write_row(rows, 0, row)
    book.close()
    return rows


def csv_child(method: str, url: str, target: Path, started: float,
              limit_seconds: float) -> tuple[int, bool]:
    """Write the CSV `target` one of three ways; returns the rows and whether all were written."""
    from renderers.csv_export import export_csv

    rows, complete = 0, True
    with target.open("wb") as out:
        if method == "herald":
            rows = export_csv(url, QUERY, {}, out, timeout_s=600, max_bytes=2**40)
        elif method == "raw":
            with psycopg.connect(url.replace("+psycopg", "")) as conn, conn.cursor() as cur:
                with cur.copy(f"COPY ({QUERY}) TO STDOUT WITH (FORMAT csv, HEADER)") as copy:
                    for chunk in copy:
                        out.write(chunk)
                rows = cur.rowcount
        else:  # seed 002: pages of 1,000 with LIMIT/OFFSET
            text = io.TextIOWrapper(out, encoding="utf-8", newline="")
            writer = csv.writer(text)
            writer.writerow(COLUMNS)
            with psycopg.connect(url.replace("+psycopg", "")) as conn:
                offset = 0
                while True:
                    page = conn.execute(f"{QUERY} LIMIT 1000 OFFSET %s", (offset,)).fetchall()
                    writer.writerows(page)
                    rows += len(page)
                    offset += 1000
                    if len(page) < 1000:
                        break
                    if time.perf_counter() - started > limit_seconds:
                        complete = False
                        break
            text.flush()
            text.detach()
    return rows, complete


def child(method: str, url: str, limit_seconds: float) -> None:
    """Run one method in this process; print rows, seconds (wall and CPU) and peak RSS as JSON."""
    xlsx = method.startswith("xlsx")
    target = Path(tempfile.mkstemp(suffix=".xlsx" if xlsx else ".csv")[1])
    # each method's modules are imported before the clock starts
    if xlsx:
        import xlsxwriter  # noqa: F401

        import renderers.xlsx_export  # noqa: F401
    else:
        import renderers.csv_export  # noqa: F401

    started, cpu_started = time.perf_counter(), time.process_time()
    if xlsx:
        rows, complete = xlsx_child(method, url, target), True
    else:
        rows, complete = csv_child(method, url, target, started, limit_seconds)
    seconds = time.perf_counter() - started
    print(json.dumps({"rows": rows, "seconds": seconds, "complete": complete,
                      "cpu_seconds": time.process_time() - cpu_started,
                      "bytes": target.stat().st_size,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
    target.unlink()


def run(method: str, url: str, limit_seconds: float) -> dict:
    result = subprocess.run([sys.executable, __file__, "--child", method, "--url", url,
                             "--seed-seconds", str(limit_seconds)],
                            check=True, capture_output=True, text=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def median(trials: list[dict]) -> dict:
    return sorted(trials, key=lambda r: r["seconds"])[len(trials) // 2]


def alternate(methods: tuple[str, ...], url: str, repeat: int) -> dict[str, dict]:
    """Run the methods in turn `repeat` times; each method's median run."""
    trials: dict[str, list[dict]] = {m: [] for m in methods}
    for _ in range(repeat):
        for method in methods:
            trials[method].append(run(method, url, 0))
    return {m: median(t) for m, t in trials.items()}


def report_csv(rows: int, results: dict[str, dict]) -> None:
    print(f"{rows:,} rows × {len(COLUMNS)} columns from PostgreSQL to a CSV file")
    for method, r in results.items():
        rate = r["rows"] / r["seconds"]
        done = "" if r["complete"] else f"  (stopped after {r['seconds']:.0f} s at {r['rows']:,} rows)"
        print(f"  {method:<7} {rate:>10,.0f} rows/s  {r['seconds']:7.2f} s  peak RSS {r['peak_rss_mb']:6.1f} MB"
              f"  {r['bytes'] / 2**20:7.1f} MiB{done}")
    herald, raw, seed = (results[m]["rows"] / results[m]["seconds"] for m in ("herald", "raw", "seed"))
    print(f"  herald / raw COPY: {herald / raw:.2f}  (goal >= 0.8, neutralisation on)")
    print(f"  herald / seed 002 (over the rows it reached): {herald / seed:.1f}x")
    print(f"  herald peak RSS {results['herald']['peak_rss_mb']:.0f} MB (goal <= 150 MB)")


def report_xlsx(rows: int, results: dict[str, dict]) -> None:
    print(f"{rows:,} rows × {len(COLUMNS)} columns from PostgreSQL to an XLSX file")
    for method, r in results.items():
        print(f"  {method:<11} {r['rows'] / r['seconds']:>8,.0f} rows/s  {r['seconds']:7.2f} s "
              f"(CPU {r['cpu_seconds']:6.2f} s)  peak RSS {r['peak_rss_mb']:6.1f} MB  "
              f"{r['bytes'] / 2**20:6.1f} MiB")
    herald, raw = results["xlsx-herald"], results["xlsx-raw"]
    print(f"  herald / XlsxWriter alone: {raw['seconds'] / herald['seconds']:.2f} by wall time, "
          f"{raw['cpu_seconds'] / herald['cpu_seconds']:.2f} by CPU time  (goal >= 0.8)")
    print(f"  herald peak RSS {herald['peak_rss_mb']:.0f} MB (goal <= 200 MB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--seed-seconds", type=float, default=120)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--xlsx-repeat", type=int, default=3)
    parser.add_argument("--only", choices=("csv", "xlsx"))
    parser.add_argument("--child")
    parser.add_argument("--url")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.url, args.seed_seconds)
        return

    name, url = create_database()
    csv_results = xlsx_results = None
    try:
        populate(url.replace("+psycopg", ""), args.rows)
        url = create_reader(name)  # what herald is given; the others read as the same role
        run("raw", url, 0)  # warm the table into the page cache
        if args.only != "xlsx":
            # raw and herald alternate, and each reports its median run; seed 002 runs once (it is slow)
            csv_results = alternate(("raw", "herald"), url, args.repeat)
            csv_results["seed"] = run("seed", url, args.seed_seconds)
        if args.only != "csv":
            xlsx_results = alternate(("xlsx-raw", "xlsx-herald"), url, args.xlsx_repeat)
    finally:
        drop_database(name)
    if csv_results:
        report_csv(args.rows, csv_results)
    if xlsx_results:
        report_xlsx(args.rows, xlsx_results)


if __name__ == "__main__":
    main()
