"""A 60 MB CSV is never sent as an empty message: zipped below the channel's limit and
delivered, or failed with the sizes and the limit; and delivering it never holds it in memory."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import psycopg
import pytest

from models.artifacts import run_artifact
from models.db import session_scope
from models.settings import get_settings
from pipeline.in_process import run_in_process
from pipeline.query import query_run
from pipeline.render import render_run
from tests.delivery.conftest import make_schedule
from tests.delivery.servers import BotApi, MailSink
from tests.delivery.test_deliver_stage import manual_run, state

MB = 1024 * 1024
pytestmark = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)


def big_report(table: str) -> dict:
    return {"slug": "big-export", "title": "Big export", "sections": [],
            "csv": {"sql": f"SELECT * FROM {table} ORDER BY id"}}


@pytest.fixture(scope="module")
def big_db(create_tenant_database) -> str:
    """Two 60 MB tables: `plain` compresses well, `noise` (hex digests) barely halves."""
    db = create_tenant_database()
    url = db.url
    with psycopg.connect(db.admin_url.replace("+psycopg", "")) as conn:
        conn.execute("""CREATE TABLE plain AS SELECT i AS id,
            'Campaign ' || (i % 7) || ' · channel ' || (i % 50) || ' · platform tiktok, youtube, vk' AS label,
            'https://videos.example.com/watch/' || (i % 1000) AS url, i % 100003 AS views
            FROM generate_series(1, 600000) AS i""")
        conn.execute("""CREATE TABLE noise AS SELECT i AS id, md5(i::text) || md5((i * 7)::text) AS a,
            md5((i * 13)::text) AS b FROM generate_series(1, 640000) AS i""")
    return url


def csv_size(url: str, table: str) -> int:
    with psycopg.connect(url.replace("+psycopg", "")) as conn, conn.cursor() as cur:
        with cur.copy(f"COPY (SELECT * FROM {table} ORDER BY id) TO STDOUT WITH (FORMAT csv, HEADER)") as copy:
            return sum(len(chunk) for chunk in copy)


def test_a_60_mb_csv_is_zipped_to_fit_and_delivered(
    db_url: str, big_db: str, mail_sink: MailSink, bot_api: BotApi, monkeypatch
) -> None:
    # Given a 60 MB CSV the renderer leaves as it is (render-time zipping off)
    assert csv_size(big_db, "plain") > 60 * MB
    monkeypatch.setenv("HERALD_CSV_COMPRESS_ABOVE_BYTES", "0")
    get_settings.cache_clear()
    run_id = manual_run(make_schedule(big_db, emails=["anna@acme.example"], chats=["1001"],
                                      formats=["csv"], report=big_report("plain")))

    run_in_process(run_id)

    # Then both channels delivered it zipped, under their limits, with every row inside
    [mail] = mail_sink.to("anna@acme.example")
    [document] = bot_api.to("1001")
    [(name, content)] = mail.attachments().items()
    assert name == document.filename and name.endswith(".csv.zip") and content == document.content
    assert len(mail.message.as_bytes()) < get_settings().mail_max_bytes
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        [inner] = archive.namelist()
        with archive.open(inner) as csv_file:
            lines = sum(1 for _ in csv_file)
    assert inner == name.removesuffix(".zip") and lines == 600_000 + 1
    assert "zipped to fit" in mail.html()
    run, _, deliveries = state(run_id)
    assert run.status == "success"


def test_a_csv_that_does_not_fit_even_zipped_fails_with_the_reason(
    db_url: str, big_db: str, mail_sink: MailSink, bot_api: BotApi
) -> None:
    # Given a 60 MB CSV that zips to about 30 MB: over e-mail's 25 MB, under Telegram's 50 MB
    assert csv_size(big_db, "noise") > 60 * MB
    run_id = manual_run(make_schedule(big_db, emails=["anna@acme.example"], chats=["1001"],
                                      formats=["csv"], report=big_report("noise")))

    run_in_process(run_id)

    # Then no e-mail went out (never an empty one), and the delivery says why
    run, _, deliveries = state(run_id)
    assert mail_sink.mails == []
    mail = deliveries["anna@acme.example"]
    assert mail.status == "failed" and "over the 25.0 MB limit (HERALD_MAIL_MAX_BYTES)" in mail.error
    # and Telegram got the zip, which fits its limit
    [document] = bot_api.to("1001")
    assert document.filename.endswith(".csv.zip") and 25 * MB < len(document.content) < 50 * MB
    assert deliveries["1001"].status == "sent"
    assert run.status == "partial"


# Prints the peak RSS (KiB) once herald is imported, then once the run is delivered.
DELIVER_AND_MEASURE = """
import resource, sys
from pipeline.deliver import deliver_run
imported = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
deliver_run(int(sys.argv[1]))
print(imported, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def test_delivering_a_60_mb_csv_never_holds_it_in_memory(
    db_url: str, big_db: str, mail_sink: MailSink, monkeypatch
) -> None:
    # Given a run whose rendered CSV artifact is 60 MB (render-time zipping off)
    monkeypatch.setenv("HERALD_CSV_COMPRESS_ABOVE_BYTES", "0")
    get_settings.cache_clear()
    run_id = manual_run(make_schedule(big_db, emails=["anna@acme.example"], formats=["csv"],
                                      report=big_report("plain")))
    assert query_run(run_id) == "render" and render_run(run_id)
    with session_scope() as session:
        csv_bytes = run_artifact(session, run_id, "csv").size
    assert csv_bytes > 60 * MB

    # When a worker process of its own runs the deliver stage
    child = subprocess.run([sys.executable, "-c", DELIVER_AND_MEASURE, str(run_id)], env=dict(os.environ),
                           cwd=Path(__file__).parents[2], capture_output=True, text=True, timeout=120)
    assert child.returncode == 0, child.stderr[-3000:]
    imported_kib, peak_kib = map(int, child.stdout.split())

    # Then the e-mail arrived with the whole CSV zipped inside
    [mail] = mail_sink.to("anna@acme.example")
    [(name, content)] = mail.attachments().items()
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        assert archive.getinfo(name.removesuffix(".zip")).file_size == csv_bytes
    assert state(run_id)[0].status == "success"
    # and the stage grew the process by less than one copy of the CSV, where reading it whole
    # and zipping it in memory took about two (measured: 15 to 40 MB now, 115 MB before; peak
    # RSS about 185 MB now, 260 MB before), so the CSV was streamed from artifact to zip to mail
    grown = (peak_kib - imported_kib) * 1024
    assert grown < csv_bytes, (
        f"the deliver stage peaked at {peak_kib // 1024} MB, {grown // MB} MB over its "
        f"{imported_kib // 1024} MB after imports, for a {csv_bytes // MB} MB CSV")
