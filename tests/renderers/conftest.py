"""Fixtures for rendering: hostile tenant data, a warm printer, a local HTTP server that
records every request, and text extraction with poppler (what a reader would see)."""

from __future__ import annotations

import http.server
import shutil
import subprocess
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from renderers.browser import ChromiumPrinter
from tests.conftest import service_missing

HOSTILE = [
    "<script>alert(1)</script>",
    "</td></tr><b>bold?</b>",
    "party 🎉 chart 📈",
    "שלום עולם",
    '=HYPERLINK("http://x")',
    "-2+3",
    "+1 555",
    "@SUM(A1)",
    "\tleading tab",
    "\rleading CR",
    'quote "inner", comma; semi',
    "line one\nline two",
    None,
]
SEED_COLUMNS = ["title", "video_url", "platform", "status", "campaign_tag", "channel_username",
                "published_at", "created_at", "views", "likes", "comments", "reposts"]
ROWS = 10_000


def pdf_text(pdf: bytes | Path, tmp_path: Path) -> str:
    if shutil.which("pdftotext") is None:
        service_missing("pdftotext (poppler-utils)", FileNotFoundError("apt-get install poppler-utils"))
    path = pdf if isinstance(pdf, Path) else tmp_path / "doc.pdf"
    if not isinstance(pdf, Path):
        path.write_bytes(pdf)
    return subprocess.run(["pdftotext", "-enc", "UTF-8", str(path), "-"], check=True,
                          capture_output=True, text=True).stdout


def pdf_images(pdf: bytes, tmp_path: Path) -> list[str]:
    path = tmp_path / "images.pdf"
    path.write_bytes(pdf)
    listing = subprocess.run(["pdfimages", "-list", str(path)], check=True, capture_output=True,
                             text=True).stdout.splitlines()
    return listing[2:]  # after the two header lines


@pytest.fixture(scope="session")
def hostile_db(create_tenant_database) -> str:
    """A tenant database with seed 002's `videos` columns: hostile text first, 10,000 rows;
    its read-only role's URL."""
    db = create_tenant_database()
    url = db.url
    start = datetime(2026, 1, 1, tzinfo=UTC)
    rows = []
    for i in range(ROWS):
        title = HOSTILE[i] if i < len(HOSTILE) else f"Video {i}"
        rows.append((i, title, f"https://videos.example.com/{i}", ["tiktok", "youtube", "vk"][i % 3],
                     "active" if i % 7 else None, "Campaign A" if i % 2 else "Campaign B",
                     HOSTILE[(i + 3) % len(HOSTILE)] if i < 50 else f"@creator{i % 37}",
                     (start + timedelta(hours=5 * i)).date(), start + timedelta(minutes=37 * i),
                     (i * 7919) % 1_000_003, i % 1000, -(i % 13), i % 5))
    with psycopg.connect(db.admin_url.replace("+psycopg", "")) as conn:
        conn.execute("""CREATE TABLE videos (id int PRIMARY KEY, title text, video_url text,
            platform varchar(20), status text, campaign_tag text, channel_username text,
            published_at date, created_at timestamptz, views bigint, likes integer,
            comments integer, reposts numeric(10, 2))""")
        with conn.cursor().copy("COPY videos FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
    return url


@pytest.fixture(scope="session")
def printer() -> Iterator[ChromiumPrinter]:
    printer = ChromiumPrinter(timeout_s=60)
    yield printer
    printer.close()


class RecordingServer(http.server.ThreadingHTTPServer):
    """Answers every request with 200 and remembers its path."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                server.requests.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"x")

            def log_message(self, *args) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def recording_server() -> Iterator[RecordingServer]:
    server = RecordingServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
