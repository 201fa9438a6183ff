"""History: the tenant's runs newest first (filters, pages of `PAGE_SIZE`, outcomes per day
stacked by status) and one run's story: its times, deliveries, documents, and Resend failed.

Layout only: every read is `services.history`, Resend failed is `services.runs.resend_failed`,
both on `ui.db()`; each `HeraldError` they raise is shown as its one sentence. The run shown is
kept in the URL (`?run=N`), so a run's story can be linked. Editors and admins get Resend
failed; viewers read.
"""

from __future__ import annotations

import functools
from zoneinfo import ZoneInfo

import streamlit as st
from sqlmodel import Session

from admin import ui
from admin.format import md
from admin.history import view
from models.base import Channel
from models.errors import HeraldError
from models.runs import RunStatus
from services import history, runs
from services.access import Action, Viewer
from services.history_records import RunFilters, RunStory


def page() -> None:
    here = ui.here(view.now())
    st.title("History")
    for kind, sentence in st.session_state.pop(view.FLASH, []):
        getattr(st, kind)(md(sentence))
    filters = filters_row(here)
    runs_table(here, filters)
    picked_run(here)


def filters_row(here: ui.Here) -> RunFilters:
    """The filters, each starting empty ("Any"), as `RunFilters`."""
    state, zone = st.session_state, ZoneInfo(here.tenant.timezone)
    try:
        choices = history.filter_choices(here.session, here.viewer, here.tenant.id)
    except HeraldError as exc:
        st.error(md(str(exc)))
        st.stop()
    schedules, reports = dict(choices.schedules), dict(choices.reports)
    for key, known in ((view.SCHEDULE, schedules), (view.REPORT, reports)):
        if key in state and state[key] is not None and state[key] not in known:
            state[key] = None   # another tenant's, after switching tenant
    first, second = st.columns(4), st.columns(4)
    first[0].selectbox("Schedule", list(schedules), key=view.SCHEDULE, index=None,
                       placeholder="Any", format_func=schedules.get)
    first[1].selectbox("Report", list(reports), key=view.REPORT, index=None, placeholder="Any",
                       format_func=reports.get)
    first[2].selectbox("Status", list(map(str, RunStatus)), key=view.STATUS, index=None,
                       placeholder="Any")
    first[3].selectbox("Kind", list(history.KINDS), key=view.KIND, index=None, placeholder="Any")
    second[0].selectbox("Channel", list(map(str, Channel)), key=view.CHANNEL, index=None,
                        placeholder="Any")
    second[1].text_input("Recipient", key=view.RECIPIENT,
                         placeholder="part of an address or chat id")
    second[2].date_input("Days", value=view.default_days(here.now, zone), key=view.DAYS,
                         help=f"Days in the tenant's timezone ({here.tenant.timezone}); clear for all.")
    return view.run_filters(state, zone)


def runs_table(here: ui.Here, filters: RunFilters) -> None:
    """Outcomes per day, then one page of the runs with Newer, Older and First page."""
    state, zone = st.session_state, ZoneInfo(here.tenant.timezone)
    try:
        outcomes = history.outcomes_per_day(here.session, here.viewer, here.tenant.id, filters)
        starts = view.page_starts(state, filters)
        shown = history.runs_page(here.session, here.viewer, here.tenant.id, filters,
                                  after=starts[-1], limit=view.PAGE_SIZE)
    except HeraldError as exc:
        st.error(md(str(exc)))
        st.stop()
    if outcomes:
        with st.container(key=view.CHART):
            st.altair_chart(view.outcomes_chart(outcomes, state.get(view.DAYS)), height=220)
    if not shown.rows:
        st.info("No runs match these filters." if len(starts) == 1 else "No older runs.")
    else:
        ids = [r.id for r in shown.rows]
        state[view.TABLE_IDS] = ids
        key = view.grid_key(starts, filters, state.get(view.GRID, 0))
        with st.container(key=view.TABLE):
            st.dataframe(view.runs_table(shown.rows, zone), hide_index=True, key=key,
                         on_select=functools.partial(ui.picked_in_grid, "run", key, view.TABLE_IDS),
                         selection_mode="single-row",
                         column_config={"Run": st.column_config.NumberColumn(format="%d",
                                                                             width="small"),
                                        "Schedule": st.column_config.NumberColumn(format="%d")})
        first_shown = (len(starts) - 1) * view.PAGE_SIZE + 1
        st.caption(f"Runs {first_shown}–{first_shown + len(ids) - 1}, newest first; times in "
                   f"{here.tenant.timezone}. Click a row to see its story.")
    newer, older, back, _ = st.columns([1, 1, 1, 5])
    if newer.button("Newer", key=view.NEWER, disabled=len(starts) == 1, width="stretch"):
        starts.pop()
        st.rerun()
    if older.button("Older", key=view.OLDER, disabled=shown.next_cursor is None, width="stretch"):
        starts.append(shown.next_cursor)
        st.rerun()
    if back.button("First page", key=view.FIRST, disabled=len(starts) == 1, width="stretch"):
        del starts[1:]
        st.rerun()


def picked_run(here: ui.Here) -> None:
    """The run picked in the table or named in the URL."""
    try:
        wanted = int(st.query_params.get("run", ""))
    except ValueError:
        return
    try:
        story = history.run_story(here.session, here.viewer, wanted, now=here.now)
    except HeraldError as exc:
        st.error(md(str(exc)))
        ui.pick("run", None)
    else:
        story_view(here, story)


def story_view(here: ui.Here, story: RunStory) -> None:
    with st.container(border=True, key=view.STORY):
        head, close = st.columns([6, 1], vertical_alignment="bottom")
        head.subheader(md(f"Run {story.id}: {story.report_title}"))
        close.button("Close", key=view.CLOSE, on_click=close_story, width="stretch")
        st.markdown("  \n".join(f"**{label}:** {md(value)}" for label, value
                                in view.story_facts(story, ZoneInfo(here.tenant.timezone))))
        st.caption(f"Schedule {story.schedule_id}; times in {here.tenant.timezone} and UTC.")
        skipped = story.status == RunStatus.SKIPPED
        if story.error:
            st.markdown("**Why nothing was sent**" if skipped else "**Error**")
            st.code(story.error, language=None, wrap_lines=True)
        st.markdown("**Deliveries**")
        if story.deliveries:
            st.dataframe(view.deliveries_table(story, ZoneInfo(here.tenant.timezone)), hide_index=True,
                         column_config={"Attempts": st.column_config.NumberColumn(format="%d")})
        else:
            st.caption("No deliveries: the report's send_if was not met." if skipped
                       else "No deliveries: the run ended before sending.")
        st.markdown("**Documents**")
        if not story.documents:
            st.caption("No documents are kept for this run.")
        for document in story.documents:
            if document.expired:
                st.caption(md(view.document_text(document)))
                continue
            ui.download_button(f"Download {document.kind.upper()}",
                               functools.partial(document_bytes, story.id, document.kind),
                               here.tenant.id, key=f"history_doc_{document.kind}",
                               file_name=document.filename, mime=document.media_type)
            st.caption(md(view.document_text(document)))
        if here.viewer.may(here.tenant.id, Action.EDIT) and view.can_resend(story):
            resend_button(here, story)


def resend_button(here: ui.Here, story: RunStory) -> None:
    st.caption("Sends the failed deliveries again, and only those, with the run's "
               "documents; those already sent are not sent twice.")
    if st.button("Resend failed", key=view.RESEND, type="primary"):
        try:
            result = runs.resend_failed(here.session, here.viewer, story.id, now=here.now)
        except HeraldError as exc:
            here.session.rollback()
            st.error(md(str(exc)))
        else:
            st.session_state[view.FLASH] = [view.resend_message(result)]
            st.rerun()


def close_story() -> None:
    ui.pick("run", None)
    st.session_state[view.GRID] = st.session_state.get(view.GRID, 0) + 1  # no row stays highlighted


def document_bytes(run_id: int, kind: str, session: Session, viewer: Viewer) -> bytes:
    """A document's bytes, read only when its button is pressed, for the viewer as they are
    then (`ui.download_button`)."""
    return history.document(session, viewer, run_id, kind, now=view.now()).content


if __name__ == "__main__":
    page()
