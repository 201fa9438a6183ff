"""Reports: the tenant's reports; the picked one's YAML (edited by editors and admins), a
preview rendered now and its PDF, CSV and XLSX on request; and, for editors and admins, a report
file to upload or paste (a known slug updates that report, a new one creates it).

Widgets and layout only: reads and saves are `services.reports`, previews and downloads
`services.documents`, which check the viewer's role themselves; their errors are one sentence
each, shown with st.error. Each report shows who changed it (the admin or the CLI), and when.
"""

from __future__ import annotations

import functools

import streamlit as st
from sqlmodel import Session

from admin import ui
from admin.format import changes_table, md, md_table, size_text, viewer_zone
from admin.reports import view as rv
from models.errors import HeraldError, InvalidInput
from models.tenancy import Tenant
from services.access import Viewer
from services.documents import download_report, preview_report
from services.reports import (
    ReportSummary,
    SavedReport,
    list_reports,
    report_changes,
    report_yaml,
    save_report_text,
)

MONOSPACE = ("<style>.st-key-report_definition textarea, .st-key-report_new_text textarea "
             "{font-family: 'DejaVu Sans Mono', ui-monospace, SFMono-Regular, Menlo, Consolas, "
             "monospace; font-size: 0.85rem; line-height: 1.45;}</style>")
FORMAT_MISSING = {"pdf": "No PDF: this report has no sections.",
                  "csv": "No CSV: this report has no csv query.",
                  "xlsx": "No XLSX: this report has no csv query."}
# The downloads offered, each with the format of the report's that it needs: the XLSX holds
# the csv query's rows. Button keys follow view.MAKE's pattern ("report_make_xlsx").
DOWNLOADS = {"pdf": "pdf", "csv": "csv", "xlsx": "csv"}
MAKE = {**rv.MAKE, "xlsx": "report_make_xlsx"}
DOWNLOAD = {**rv.DOWNLOAD, "xlsx": "report_download_xlsx"}


def saved(result: SavedReport, clear_text: bool = False) -> None:
    """Show the report just saved, with the result sentence, on a fresh run."""
    st.session_state[rv.NOTICE] = f"Report {result.slug} {'created' if result.created else 'updated'}."
    st.session_state[rv.PENDING] = {"pick": result.id, "clear_text": clear_text}
    st.rerun()


def definition_tab(viewer: Viewer, tenant: Tenant, report: ReportSummary, version: tuple) -> None:
    editor = rv.can_edit(viewer, tenant)
    if st.session_state.get(rv.LOADED) != version or rv.DEFINITION not in st.session_state:
        try:
            st.session_state[rv.DEFINITION] = report_yaml(ui.db(), viewer, report.id)
        except HeraldError as exc:
            st.error(md(str(exc)))
            return
        st.session_state[rv.LOADED] = version
    text = st.text_area("Definition (YAML)", height=420, key=rv.DEFINITION, disabled=not editor)
    if not editor:
        st.caption(f"Read-only: your role in {md(tenant.name)} is viewer; editors and admins "
                   f"change reports.")
        return
    st.caption("The slug stays; to make a copy under another slug, upload it below.")
    if st.button("Save", key=rv.SAVE, type="primary"):
        try:
            result = save_report_text(ui.db(), viewer, tenant.id, text, report_id=report.id)
        except HeraldError as exc:
            st.error(md(str(exc)))
        else:
            saved(result)


def preview_tab(viewer: Viewer, report: ReportSummary, version: tuple) -> None:
    st.caption("Runs the report's queries on the tenant's data now, with its default "
               "parameters; nothing is stored or sent.")
    viewer_installed = rv.pdf_viewer_installed()
    images = st.toggle("Show page images instead", key=rv.PREVIEW_IMAGES,
                       disabled=not viewer_installed) or not viewer_installed
    clicked = st.button("Render preview", key=rv.PREVIEW, type="primary")
    shown = st.session_state.get(rv.PREVIEWED)
    if shown is not None and shown[0] != version:
        shown = None  # another report, or this one saved since
    if clicked or (shown is not None and shown[1] != images):
        try:
            with st.spinner("Rendering the preview…"):
                preview = rv.on_render_thread(preview_report, ui.db(), viewer, report.id,
                                              images=images)
        except HeraldError as exc:
            st.session_state.pop(rv.PREVIEWED, None)
            st.error(md(str(exc)))
            return
        shown = st.session_state[rv.PREVIEWED] = (version, images, preview)
    if shown is None:
        return
    preview = shown[2]
    if preview.pdf is None:
        st.info("This report has no sections, so it makes no PDF.")
    elif not images:
        st.pdf(preview.pdf, height=700, key=rv.PDF, alt=f"Preview of {report.title}")
    elif preview.pages:
        for number, page in enumerate(preview.pages, 1):
            st.image(page, caption=f"Page {number} of {len(preview.pages)}")
    else:
        st.info(md(preview.note))
    if preview.csv_total is None:
        st.caption(FORMAT_MISSING["csv"])
        return
    st.subheader("CSV rows")
    st.caption(rv.rows_caption(len(preview.csv_rows), preview.csv_total))
    with st.container(key=rv.CSV_ROWS):
        st.dataframe(rv.rows_frame(preview.csv_columns, preview.csv_rows), hide_index=True)


def kept(content: bytes, session: Session, viewer: Viewer) -> bytes:
    """A document made on Generate, handed over on Download once the session is checked again
    (`ui.download_button`)."""
    return content


def download_tab(viewer: Viewer, tenant: Tenant, report: ReportSummary, version: tuple) -> None:
    st.caption("Made now with the report's default parameters, as `herald export` makes "
               "them; nothing is sent.")
    files = st.session_state.setdefault(rv.FILES, {})
    for (fmt, needs), column in zip(DOWNLOADS.items(), st.columns(len(DOWNLOADS)), strict=True):
        with column:
            if needs not in report.formats:
                st.caption(FORMAT_MISSING[fmt])
                continue
            made = files.get(fmt)
            if made is not None and made[0] != version:  # another report, or saved since
                del files[fmt]
                made = None
            if st.button(f"Generate {fmt.upper()}", key=MAKE[fmt]):
                try:
                    with st.spinner(f"Making the {fmt.upper()}…"):
                        document = rv.on_render_thread(download_report, ui.db(), viewer,
                                                       report.id, fmt)
                except HeraldError as exc:
                    files.pop(fmt, None)
                    st.error(md(str(exc)))
                    continue
                made = files[fmt] = (version, document)
            if made is None:
                continue
            document = made[1]
            ui.download_button(f"Download {fmt.upper()}", functools.partial(kept, document.content),
                               tenant.id, file_name=document.filename, mime=document.media_type,
                               key=DOWNLOAD[fmt], type="primary")
            rows = "" if document.rows is None else f", {document.rows} rows"
            st.caption(md(f"{document.filename}: {size_text(len(document.content))}{rows}"))


def upload_area(viewer: Viewer, tenant: Tenant) -> None:
    with st.container(border=True, key="reports_upload_area"):
        st.subheader("Upload / New report")
        st.caption("A report file as `herald report add` takes it. A report whose slug is "
                   "already one of this tenant's is updated; another slug makes a new report. "
                   "A chosen file is used before pasted text.")
        upload = st.file_uploader("Report file (.yaml)", type=["yaml", "yml"], key=rv.UPLOAD,
                                  max_upload_size=rv.UPLOAD_MAX_BYTES // (1024 * 1024))
        pasted = st.text_area("…or paste a report's YAML", height=240, key=rv.NEW_TEXT)
        if not st.button("Upload and save", key=rv.UPLOAD_SAVE):
            return
        try:
            if upload is not None:
                source, text = upload.name, rv.uploaded_text(upload.name, upload.getvalue())
            elif pasted.strip():
                source, text = "report.yaml", pasted
            else:
                raise InvalidInput("Nothing to save: choose a .yaml file or paste a report's "
                                   "YAML first.")
            result = save_report_text(ui.db(), viewer, tenant.id, text, source=source)
        except HeraldError as exc:
            st.error(md(str(exc)))
        else:
            saved(result, clear_text=upload is None)


def page() -> None:
    viewer, tenant = ui.current()
    editor = rv.can_edit(viewer, tenant)
    st.title("Reports")
    st.html(MONOSPACE)
    pending = st.session_state.pop(rv.PENDING, {})
    if "pick" in pending:
        st.session_state[rv.PICK] = pending["pick"]
    if pending.get("clear_text"):
        st.session_state[rv.NEW_TEXT] = ""
    notice = st.session_state.pop(rv.NOTICE, None)
    if notice:
        st.success(md(notice))
    try:
        summaries = list_reports(ui.db(), viewer, tenant.id)
    except HeraldError as exc:
        st.error(md(str(exc)))
        st.stop()
    if summaries:
        picked_report(viewer, tenant, summaries)
    else:
        st.query_params.pop("report", None)
        st.info(f"{md(tenant.name)} has no reports yet."
                + (" Upload a report file below." if editor else " Editors and admins add them."))
    if editor:
        upload_area(viewer, tenant)


def picked_report(viewer: Viewer, tenant: Tenant, summaries: list[ReportSummary]) -> None:
    """The list of reports, and the picked one's definition, preview, downloads and changes."""
    by_id = {s.id: s for s in summaries}
    with st.container(key=rv.TABLE):
        st.dataframe(rv.list_frame(summaries, tenant.timezone), hide_index=True)
    if st.session_state.get(rv.PICK) not in by_id:  # first visit, another tenant, or deleted
        wanted = st.query_params.get("report")
        st.session_state[rv.PICK] = next((i for i in by_id if str(i) == wanted), summaries[0].id)
    picked = by_id[st.selectbox("Report", list(by_id), key=rv.PICK,
                                format_func=lambda i: rv.label(by_id[i]))]
    st.query_params["report"] = str(picked.id)
    current = rv.version(tenant, picked)
    definition, preview, download, changes = st.tabs(["Definition", "Preview", "Download",
                                                      "Changes"])
    with definition:
        definition_tab(viewer, tenant, picked, current)
    with preview:
        preview_tab(viewer, picked, current)
    with download:
        download_tab(viewer, tenant, picked, current)
    with changes:
        changes_tab(viewer, picked)


def changes_tab(viewer: Viewer, report: ReportSummary) -> None:
    """Who saved the report, and when: through the admin or `herald report add`."""
    try:
        changes = report_changes(ui.db(), viewer, report.id)
    except HeraldError as exc:
        st.error(md(str(exc)))
        return
    if not changes:
        st.caption("No changes recorded.")
        return
    with st.container(key=rv.CHANGES):
        st.table(md_table(changes_table(changes, viewer_zone(st.context.timezone))),
                 hide_index=True)


if __name__ == "__main__":
    page()
