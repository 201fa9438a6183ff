"""E-mail delivery throughput: one run to 500 recipients on a local SMTP server.

herald's deliver stage (a Delivery row per recipient claimed before and stamped after
each send, Message-ID per delivery, one SMTP connection) against a plain
`smtplib` loop sending the same message to the same 500 addresses over one
connection, with no bookkeeping at all. The report (KPI, chart, table + CSV) is
queried and rendered once, before anything is timed; each repetition delivers the
same rendered run again from a clean slate. The SMTP server (aiosmtpd in a
process of its own, as a real MTA would be) only counts what it accepts. Control
database: PostgreSQL.

    python bench/delivery.py [--recipients 500] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import smtplib
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg  # noqa: E402
import sqlalchemy as sa  # noqa: E402
from aiosmtpd.controller import Controller  # noqa: E402

from bench._common import create_database, create_reader, drop_database, free_port  # noqa: E402

SENDER = "Acme Reports <reports@acme.example>"
REPORT = {
    "slug": "video-performance", "title": "Video performance", "params": {"campaign": "Campaign A"},
    "sections": [
        {"kind": "kpi", "title": "Total views",
         "sql": "SELECT sum(views) AS value FROM videos WHERE campaign_tag = :campaign"},
        {"kind": "chart", "title": "Views by platform",
         "sql": "SELECT platform, sum(views) AS views FROM videos GROUP BY platform ORDER BY 1",
         "chart": {"mark": "bar", "x": "platform", "y": "views"}},
        {"kind": "table", "title": "Top videos",
         "sql": "SELECT title, platform, views FROM videos ORDER BY views DESC LIMIT 50"},
    ],
    "csv": {"sql": "SELECT title, platform, views FROM videos WHERE campaign_tag = :campaign ORDER BY id"},
}


class CountingSink:
    """Accepts every message and notes one line per message in a file, like a spooling MTA."""

    def __init__(self, tally: Path) -> None:
        self.tally = tally.open("a", buffering=1)

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        self.tally.write(f"{len(envelope.rcpt_tos)}\n")
        return "250 OK"


def serve_smtp(port: int, tally: Path) -> None:
    """The sink process (`--serve-smtp PORT FILE`): runs until killed."""
    controller = Controller(CountingSink(tally), hostname="127.0.0.1", port=port)
    controller.start()
    print("ready", flush=True)
    while True:
        time.sleep(3600)


class SinkProcess:
    def __init__(self, tally: Path) -> None:
        self.port, self.tally = free_port(), tally
        tally.write_text("")
        self.process = subprocess.Popen([sys.executable, __file__, "--serve-smtp", str(self.port), str(tally)],
                                        stdout=subprocess.PIPE, text=True)
        assert self.process.stdout.readline().strip() == "ready"

    @property
    def messages(self) -> int:
        return len(self.tally.read_text().splitlines())

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()




def prepare(url: str, recipients: list[str]) -> int:
    """Tenant data, the report, a schedule to `recipients`; queried and rendered once. The run id."""
    from models import migrate
    from models.db import session_scope, utcnow
    from models.definition import parse_definition
    from pipeline.lifecycle import create_manual_run
    from pipeline.query import RENDER, query_run
    from pipeline.render import render_run
    from tests.seeding import add_schedule, add_tenant, save_report

    migrate.upgrade(url)
    with psycopg.connect(url.replace("+psycopg", "")) as conn:
        conn.execute("""CREATE TABLE videos AS SELECT i AS id, 'Video ' || i AS title,
            (ARRAY['tiktok', 'youtube', 'vk'])[1 + i % 3] AS platform,
            CASE WHEN i % 2 = 0 THEN 'Campaign A' ELSE 'Campaign B' END AS campaign_tag,
            (i * 7919) % 100003 AS views FROM generate_series(1, 2000) AS i""")
    reader = create_reader(url.rsplit("/", 1)[1])  # herald reads tenant data as a SELECT-only role
    with session_scope(url) as session:
        tenant = add_tenant(session, "acme", "Acme Corp", "Europe/Berlin", reader)
        save_report(session, tenant, parse_definition(REPORT))
        schedule = add_schedule(session, tenant, "video-performance", now=utcnow(), cron_expr="0 9 * * *",
                                formats=["pdf", "csv"], emails=recipients)
        run_id = create_manual_run(session, schedule, utcnow(), "cli").id
    assert query_run(run_id) == RENDER and render_run(run_id)
    return run_id


def reset(url: str, run_id: int) -> None:
    """The run as it was when rendering finished: running, nothing delivered."""
    with psycopg.connect(url.replace("+psycopg", "")) as conn:
        conn.execute("DELETE FROM delivery WHERE run_id = %s", (run_id,))
        conn.execute("UPDATE report_run SET status = 'running', finished_at = NULL, error = NULL, "
                     "lease_expires_at = now() + interval '10 minutes' WHERE id = %s", (run_id,))


def herald_deliver(url: str, run_id: int, sink: SinkProcess, count: int) -> float:
    from models.db import session_scope
    from models.runs import ReportRun
    from pipeline.deliver import deliver_run

    reset(url, run_id)
    before = sink.messages
    started = time.perf_counter()
    deliver_run(run_id)
    elapsed = time.perf_counter() - started
    with session_scope(url) as session:
        status = session.get(ReportRun, run_id).status
        sent = session.execute(sa.text("SELECT count(*) FROM delivery WHERE run_id = :r AND status = 'sent'"),
                               {"r": run_id}).scalar()
    assert status == "success" and sent == count and sink.messages - before == count, (status, sent)
    return elapsed


def plain_loop(port: int, message: bytes, recipients: list[str], sink: SinkProcess) -> float:
    before = sink.messages
    started = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", port) as smtp:
        for address in recipients:
            smtp.sendmail("reports@acme.example", [address], message)
    elapsed = time.perf_counter() - started
    assert sink.messages - before == len(recipients)
    return elapsed


def one_message(url: str, run_id: int) -> bytes:
    """The message herald sends to the first recipient, byte for byte."""
    from delivery.mail import MailSender
    from models.db import session_scope
    from models.runs import ReportRun
    from models.settings import get_settings
    from pipeline.letter import build_letter

    with tempfile.TemporaryDirectory(prefix="herald-bench-letter-") as directory:
        with session_scope(url) as session:
            letter = build_letter(session, session.get(ReportRun, run_id), Path(directory))
        sender = MailSender(get_settings())
        return b"To: first@acme.example\r\nMessage-ID: <x@acme.example>\r\n" + sender._body(letter)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--serve-smtp", nargs=2, metavar=("PORT", "FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_smtp:
        return serve_smtp(int(args.serve_smtp[0]), Path(args.serve_smtp[1]))

    sink = SinkProcess(Path(tempfile.mkdtemp(prefix="herald-bench-")) / "tally")
    name, url = create_database()
    os.environ.update({"DATABASE_URL": url, "MAIL_SMTP_HOST": "127.0.0.1", "MAIL_SMTP_PORT": str(sink.port),
                       "MAIL_FROM": SENDER, "HERALD_MAX_RECIPIENTS": str(args.recipients),
                       "RENDER_PDF_STUB": "false"})
    os.environ.pop("REDIS_URL", None)
    from models.settings import get_settings

    get_settings.cache_clear()
    recipients = [f"reader{i}@acme.example" for i in range(args.recipients)]
    try:
        started = time.perf_counter()
        run_id = prepare(url, recipients)
        print(f"query + render once: {time.perf_counter() - started:.2f} s")
        message = one_message(url, run_id)
        print(f"message size: {len(message) / 1024:.0f} KiB (PDF and CSV attached)")
        herald_deliver(url, run_id, sink, len(recipients))  # warm-up: connections, caches
        plain_loop(sink.port, message, recipients[:50], sink)
        herald_times, plain_times = [], []
        for _ in range(args.repeat):  # interleaved, so both see the same machine state
            plain_times.append(plain_loop(sink.port, message, recipients, sink))
            herald_times.append(herald_deliver(url, run_id, sink, len(recipients)))
    finally:
        sink.stop()
        drop_database(name)

    n = len(recipients)
    herald_s, plain_s = statistics.median(herald_times), statistics.median(plain_times)
    herald_rate, plain_rate = n / herald_s * 60, n / plain_s * 60
    print(f"herald deliver stage: {herald_s:.2f} s for {n} messages = {herald_rate:,.0f} messages/min "
          f"(runs: {', '.join(f'{t:.2f}' for t in herald_times)})")
    print(f"plain smtplib loop:   {plain_s:.2f} s for {n} messages = {plain_rate:,.0f} messages/min "
          f"(runs: {', '.join(f'{t:.2f}' for t in plain_times)})")
    print(f"herald / plain loop: {herald_rate / plain_rate:.2f}x (goal >= 0.7)")


if __name__ == "__main__":
    main()
