"""PDF documents: the report's HTML printed by Chromium, or a stub without a browser.

`RENDER_PDF_STUB=true` (as in the system herald replaces) keeps sends going where
no browser is installed: a valid, text-only PDF saying so.
"""

from __future__ import annotations

import functools
import unicodedata
import zlib

from models.settings import get_settings
from renderers.browser import ChromiumPrinter

PDF_MEDIA_TYPE = "application/pdf"


@functools.cache
def printer() -> ChromiumPrinter:
    """The process's printer (it keeps one browser per thread)."""
    settings = get_settings()
    return ChromiumPrinter(settings.chromium_path, timeout_s=settings.render_timeout_seconds)


def print_pdf(html: str, title: str, lines: list[str], tenant_key: str | None = None) -> bytes:
    """The PDF; renders for one tenant may share a browser context (HERALD_RENDER_ISOLATION)."""
    settings = get_settings()
    if settings.render_pdf_stub:
        return stub_pdf([title, *lines, "", "PDF rendering is stubbed (RENDER_PDF_STUB=true)."])
    key = tenant_key if settings.render_isolation == "tenant" else None
    return printer().print_pdf(html, title, key)


def _pdf_text(text: str) -> str:
    # NFKC turns typographic spaces (the KPIs' thousands separator) into plain ones.
    latin = unicodedata.normalize("NFKC", text).encode("latin-1", "replace").decode("latin-1")
    return latin.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def stub_pdf(lines: list[str]) -> bytes:
    """A one-page PDF of plain text lines (Helvetica, Latin-1), valid for any reader."""
    text = ["BT", "/F1 11 Tf", "14 TL", "56 790 Td"]
    for i, line in enumerate(lines[:50]):
        text.append(f"({_pdf_text(line[:110])}) Tj" if i == 0 else f"T* ({_pdf_text(line[:110])}) Tj")
    text.append("ET")
    stream = zlib.compress("\n".join(text).encode("latin-1"))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    ]
    out, offsets = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n"), []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)
