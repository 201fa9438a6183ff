"""What the Reports page (`admin/reports/page.py`) needs besides widgets: its widget keys,
the rows of its tables, and the thread its renders run on.

Streamlit runs every script run on a new thread, and herald's PDF printer keeps one
Chromium per thread; so a preview or a download run on the page's own thread would launch
a browser each time and leave it behind when the thread ends. They run instead on a small,
long-lived pool whose threads keep their browsers warm (a browser context never serves two
tenants: the printer sees to that). Every tenant shares them, so one tenant has at most
TENANT_RENDERS of them at a time: a tenant whose previews hang cannot keep another's waiting.
"""

from __future__ import annotations

import atexit
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from importlib.util import find_spec
from typing import Any, TypeVar

import pandas as pd
from sqlmodel import Session, select

from admin.format import local_time
from models import report_file
from models.errors import InvalidInput
from models.reports import Report
from models.tenancy import Tenant
from services.access import Action, Viewer
from services.reports import ReportSummary

T = TypeVar("T")

# Widget keys (tests and browser tests use them).
PICK = "report_pick"                  # selectbox "Report": the report shown below the list
TABLE = "reports_table"               # container of the list of the tenant's reports
DEFINITION = "report_definition"      # text area "Definition (YAML)"
SAVE = "report_save"                  # button "Save" (editors and admins)
PREVIEW = "report_preview"            # button "Render preview"
PREVIEW_IMAGES = "report_preview_images"  # toggle "Show page images instead"
PDF = "report_pdf"                    # st.pdf viewer
CSV_ROWS = "report_csv_rows"          # container of the table of the CSV query's first rows
MAKE = {"pdf": "report_make_pdf", "csv": "report_make_csv"}        # buttons "Generate PDF/CSV"
DOWNLOAD = {"pdf": "report_download_pdf", "csv": "report_download_csv"}  # "Download PDF/CSV"
UPLOAD = "report_upload"              # file uploader "Report file (.yaml)"
NEW_TEXT = "report_new_text"          # text area "…or paste a report's YAML"
UPLOAD_SAVE = "report_upload_save"    # button "Save report file"
CHANGES = "report_changes"            # container of the table of the report's changes

# Page state that is not a widget's (underscored: never shown, never a widget key).
LOADED = "_reports_loaded"            # (tenant id, report id, updated_at) the editor holds
PREVIEWED = "_reports_preview"        # (version, images, Preview) of the last preview
FILES = "_reports_files"              # {fmt: (version, Download)} made on request
NOTICE = "_reports_notice"            # one sentence for the next run (a save's result)
PENDING = "_reports_pending"          # what the next run sets before its widgets exist

UPLOAD_MAX_BYTES = report_file.MAX_BYTES  # the limit of every face's report files
RENDER_THREADS = 2
TENANT_RENDERS = RENDER_THREADS - 1  # a tenant's share: the other thread stays free for the rest

_pool = ThreadPoolExecutor(max_workers=RENDER_THREADS, thread_name_prefix="herald-admin-render")
atexit.register(_pool.shutdown, wait=False, cancel_futures=True)
_rendering: Counter[int | None] = Counter()  # tenant id -> its renders queued or running
_rendering_lock = threading.Lock()


def on_render_thread(function: Callable[..., T], session: Session, viewer: Viewer, report_id: int,
                     *args: Any, **kwargs: Any) -> T:
    """`function(session, viewer, report_id, *args, **kwargs)`, a preview or a download of a report,
    on a render thread (the caller waits; its errors re-raise). A tenant whose renders already
    fill its share is refused in one sentence, so that other tenants' renders are not queued
    behind its slow ones."""
    tenant_id = session.exec(select(Report.tenant_id).where(Report.id == report_id)).first()
    with _rendering_lock:
        if _rendering[tenant_id] >= TENANT_RENDERS:
            raise InvalidInput(
                "This tenant's previews and downloads already use their share of the admin's "
                f"render threads ({TENANT_RENDERS} at a time); wait for the render under way to "
                "finish, then try again.")
        _rendering[tenant_id] += 1
    try:
        future = _pool.submit(function, session, viewer, report_id, *args, **kwargs)
    except BaseException:
        _done(tenant_id)
        raise
    future.add_done_callback(lambda _: _done(tenant_id))  # a cancelled one too
    return future.result()


def _done(tenant_id: int | None) -> None:
    with _rendering_lock:
        _rendering[tenant_id] -= 1
        if _rendering[tenant_id] <= 0:
            del _rendering[tenant_id]


def can_edit(viewer: Viewer, tenant: Tenant) -> bool:
    """Whether the viewer's role in the tenant may change reports (the data functions check
    again; this only decides which widgets to show)."""
    return viewer.may(tenant.id, Action.EDIT)


def version(tenant: Tenant, summary: ReportSummary) -> tuple[int, int, str]:
    """What a preview, a download or the editor's text was made from: a save changes it."""
    return tenant.id, summary.id, summary.updated_at.isoformat()


def list_frame(summaries: Sequence[ReportSummary], timezone: str) -> pd.DataFrame:
    """The reports list: title, slug, sections, formats, and when each was last saved (in the
    tenant's timezone)."""
    return pd.DataFrame({
        "title": [s.title for s in summaries],
        "slug": [s.slug for s in summaries],
        "sections": [s.sections for s in summaries],
        "formats": [", ".join(s.formats) or "—" for s in summaries],
        "updated": [local_time(s.updated_at, timezone) for s in summaries],
    })


def label(summary: ReportSummary) -> str:
    return f"{summary.title} ({summary.slug})"


def rows_frame(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> pd.DataFrame:
    """The CSV preview's rows under their columns; a repeated column name gets " (2)", " (3)"…
    (a table cannot show two columns of one name)."""
    seen: dict[str, int] = {}
    names = []
    for column in columns:
        seen[column] = seen.get(column, 0) + 1
        names.append(column if seen[column] == 1 else f"{column} ({seen[column]})")
    return pd.DataFrame([list(row) for row in rows], columns=names)


def rows_caption(shown: int, total: int | None) -> str:
    if total is None:
        return ""
    if shown >= total:
        return f"CSV: all {total} rows"
    return f"CSV: first {shown} of {total} rows"


def uploaded_text(name: str, content: bytes) -> str:
    """An uploaded file's text; a file too large or not UTF-8 is refused in one sentence."""
    if len(content) > UPLOAD_MAX_BYTES:
        raise InvalidInput(f"{name} is {len(content):,} bytes; a report file may be at most "
                         f"{UPLOAD_MAX_BYTES:,} bytes.")
    try:
        return content.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidInput(f"{name} is not UTF-8 text; save it as UTF-8 and upload it again.") from None


def pdf_viewer_installed() -> bool:
    """Whether st.pdf can show a PDF (it needs the `streamlit[pdf]` extra)."""
    return find_spec("streamlit_pdf") is not None
