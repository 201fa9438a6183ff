"""Schedules: the tenant's schedules (filter, sort, pages of 100, pick one), create and
edit with a live cron helper, pause or resume, delete, send now, send a test, and the picked
schedule's history.

Layout only: the table is `services.schedule_table`, the changes `services.schedules`, the
sends `services.runs`, all on `ui.db()`; the create/edit form is `form.py`. Each
`HeraldError` they raise is shown as its one sentence. The picked schedule's id is kept in the URL
(`?schedule=N`); it stays picked whatever page the table shows. Editors and admins get the
buttons; viewers read.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, NoReturn

import streamlit as st

from admin import ui
from admin.format import changes_table, md, md_table, viewer_zone
from admin.schedules import view
from admin.schedules.form import open_form, schedule_form
from models.errors import HeraldError
from services import runs, schedules
from services.access import Action
from services.runs import SentRun
from services.schedule_table import ScheduleRow, halted_schedules, schedule_page, schedule_row


def page() -> None:
    here = ui.here(view.now())
    can_edit = here.viewer.may(here.tenant.id, Action.EDIT)
    st.title("Schedules")
    ui.show_flash(view.FLASH)
    try:
        selected = int(st.query_params.get("schedule", ""))
    except ValueError:
        selected = None
    try:  # the picked schedule, whatever page the table shows
        row = schedule_row(here.session, here.viewer, here.tenant.id, selected) if selected else None
        halted = halted_schedules(here.session, here.viewer, here.tenant.id)
    except HeraldError as exc:
        st.error(md(str(exc)))
        st.stop()
    if row is None:  # none, gone, or not this tenant's
        selected = None
        ui.pick("schedule", None)
    if halted := [(i, title) for i, title in halted if i != selected]:
        st.warning(md("Paused by herald after failing in a row: " + ", ".join(
            f"#{i} {title}" for i, title in halted) + ". Pick one to see why and resume it."))
    shown = table(here, selected, can_edit)
    by_id = {r.id: r for r in shown} | ({row.id: row} if row else {})
    picker(here, by_id, [r.id for r in shown], selected, can_edit)
    if can_edit:
        schedule_form(here, selected)
    if row is not None:
        picked(here, row, can_edit)


def table(here: ui.Here, selected: int | None, can_edit: bool) -> list[ScheduleRow]:
    """The filtered, sorted table, one page of it with Previous, Next and First page; returns
    the rows it shows, in order."""
    state = st.session_state
    text_col, status_col, sort_col, paused_col = st.columns([3, 1, 1, 1], vertical_alignment="bottom")
    needle = text_col.text_input("Filter", key="schedules_filter",
                                 placeholder="report, recipient or words, e.g. daily")
    status = status_col.selectbox("Last status", view.STATUSES, key="schedules_status")
    order = sort_col.selectbox("Sort by", list(view.SORTS), key="schedules_sort")
    show_paused = paused_col.checkbox("Show paused", value=True, key="schedules_show_paused")
    filters = view.schedule_filters(needle, status, order, show_paused)
    try:
        shown = schedule_page(here.session, here.viewer, here.tenant.id, filters,
                              offset=view.page_offset(state, filters), limit=view.ROWS_A_PAGE)
    except HeraldError as exc:
        st.error(md(str(exc)))
        st.stop()
    view.turn_page(state, shown.offset)  # an offset past the end (rows deleted) shows the last
    shown_ids = [r.id for r in shown.rows]
    # The grid keeps its own selection; when the picked schedule changed elsewhere (the list,
    # the URL, a save or delete) or the rows moved, a fresh grid starts from the picked row.
    grid = view.table_grid(state, selected, shown_ids)
    state[view.TABLE_IDS] = shown_ids
    filtered = filters != view.schedule_filters("", "any", order, True)
    if not shown.total:
        st.info("No schedule matches these filters." if filtered else "No schedules yet."
                + (" Press New schedule to add one." if can_edit else ""))
        return shown.rows
    with st.container(key="schedules_table"):
        picked_row = functools.partial(ui.picked_in_grid, "schedule", grid.key, view.TABLE_IDS)
        st.dataframe(view.highlighted(view.table(shown.rows)), hide_index=True, key=grid.key,
                     on_select=picked_row,
                     selection_mode="single-row", selection_default=grid.default,
                     column_config={"⚠": st.column_config.TextColumn(width=32),
                                    "Id": st.column_config.NumberColumn(format="%d", width="small"),
                                    "Last 10": st.column_config.TextColumn(help=view.STRIP_HELP),
                                    "Paused": st.column_config.CheckboxColumn()})
    text_col, previous, following, first = st.columns([5, 1, 1, 1], vertical_alignment="center")
    text_col.markdown(view.page_text(shown.offset, len(shown.rows), shown.total, filtered))
    if shown.total > view.ROWS_A_PAGE:  # more than one page: the buttons that turn them
        pager(shown.offset, len(shown.rows), shown.total, (previous, following, first))
    st.caption(f"Click a row, or pick one below; Sort by orders them all, a column header this "
               f"page. {view.STRIP_LEGEND}")
    return shown.rows


def pager(offset: int, shown: int, total: int, columns: Sequence[Any]) -> None:
    """Previous, Next and First page, in `columns`."""
    state, (previous, following, first) = st.session_state, columns
    at_start, at_end = offset == 0, offset + shown >= total
    if previous.button("Previous", key=view.PREVIOUS, disabled=at_start, width="stretch"):
        view.turn_page(state, offset - view.ROWS_A_PAGE)
        st.rerun()
    if following.button("Next", key=view.NEXT, disabled=at_end, width="stretch"):
        view.turn_page(state, offset + view.ROWS_A_PAGE)
        st.rerun()
    if first.button("First page", key=view.FIRST, disabled=at_start, width="stretch"):
        view.turn_page(state, 0)
        st.rerun()


def picker(here: ui.Here, by_id: dict[int, ScheduleRow], shown_ids: list[int],
           selected: int | None, can_edit: bool) -> None:
    """The schedule list: the page's schedules, and the picked one wherever it is."""
    pick_col, new_col = st.columns([4, 1], vertical_alignment="bottom")
    options = [None, *shown_ids] + ([selected] if selected and selected not in shown_ids else [])
    st.session_state["schedule_pick"] = selected
    pick_col.selectbox("Schedule", options, key="schedule_pick", on_change=picked_in_list,
                       placeholder="Pick a schedule to see its history and actions",
                       format_func=lambda i: "—" if i is None else view.label(by_id[i]))
    if can_edit and new_col.button("New schedule", key="schedule_new", width="stretch"):
        open_form(here, None)


# --- the picked schedule: its actions and its history ------------------------------------------

def picked(here: ui.Here, row: ScheduleRow, can_edit: bool) -> None:
    st.subheader(md(f"Schedule {row.id}: {row.report_title}"))
    st.caption(md(f"{row.description or row.cron} ({row.timezone}) · "
                  + ("paused" if row.paused else f"next {view.next_fire(row)}")
                  + f" · to {row.recipients_text}"))
    if row.paused_reason:  # herald paused it: why, with the Resume button right below
        st.warning(md(view.paused_by_herald(row)) + (" Fix the cause, then press Resume." if can_edit
                                                 else " An editor or admin of the tenant can resume it."))
    if can_edit:
        actions(here, row)
        send_test(here, row)
    history(here, row)


def actions(here: ui.Here, row: ScheduleRow) -> None:
    """Edit, Pause or Resume, Send now, and Delete (after a confirmation)."""
    edit_col, pause_col, send_col, delete_col, _ = st.columns([1, 1, 1, 1, 3])
    if edit_col.button("Edit", key="schedule_edit", width="stretch"):
        open_form(here, row.id)
    toggle = "Resume" if row.paused else "Pause"
    if pause_col.button(toggle, key=f"schedule_{toggle.lower()}", width="stretch",
                        type="primary" if row.paused_reason else "secondary"):
        try:
            (schedules.resume if row.paused else schedules.pause)(here.session, here.viewer, row.id,
                                                                  now=here.now)
        except HeraldError as exc:
            ui.refused(here, view.FLASH, exc)
        ui.flash(view.FLASH, "success", f"Schedule {row.id} {'resumed' if row.paused else 'paused'}.")
        st.rerun()
    if send_col.button("Send now", key="schedule_send_now", width="stretch"):
        try:
            sent = runs.send_now(here.session, here.viewer, row.id, now=here.now)
        except HeraldError as exc:
            ui.refused(here, view.FLASH, exc)
        flash_sent(here, sent)
    if delete_col.button("Delete", key="schedule_delete", width="stretch"):
        st.session_state[view.CONFIRM_DELETE] = row.id
    if st.session_state.get(view.CONFIRM_DELETE) != row.id:
        return
    with st.container(border=True, key="delete_confirmation"):
        st.warning(md(f"Delete schedule {row.id} ({row.report_title}, "
                      f"{row.description or row.cron})? It stops firing and leaves this table; "
                      f"its runs and change history are kept."))
        yes_col, no_col, _ = st.columns([1, 1, 4])
        if yes_col.button(f"Delete schedule {row.id}", key="schedule_delete_confirm",
                          type="primary"):
            st.session_state.pop(view.CONFIRM_DELETE, None)
            try:
                schedules.delete(here.session, here.viewer, row.id, now=here.now)
            except HeraldError as exc:
                ui.refused(here, view.FLASH, exc)
            ui.pick("schedule", None)
            ui.flash(view.FLASH, "success", f"Schedule {row.id} deleted; its runs and change history are kept.")
            st.rerun()
        if no_col.button("Cancel", key="schedule_delete_cancel"):
            st.session_state.pop(view.CONFIRM_DELETE, None)
            st.rerun()


def send_test(here: ui.Here, row: ScheduleRow) -> None:
    with st.expander("Send a test to…"):
        st.caption("Only the addresses typed here get it; it is recorded as a test run and "
                   "does not change the schedule's status.")
        test_emails_col, test_chats_col = st.columns(2)
        test_emails = test_emails_col.text_area("E-mail addresses, one per line", key="test_emails")
        test_chats = test_chats_col.text_area("Telegram chat ids, one per line", key="test_chats")
        if st.button("Send test", key="schedule_send_test"):
            try:
                sent = runs.send_test(here.session, here.viewer, row.id, now=here.now,
                                      emails=view.lines(test_emails), chats=view.lines(test_chats))
            except HeraldError as exc:
                ui.refused(here, view.FLASH, exc)
            flash_sent(here, sent)


def history(here: ui.Here, row: ScheduleRow) -> None:
    """The schedule's runs beside its changes (the admin's and the CLI's)."""
    try:
        past = schedules.schedule_history(here.session, here.viewer, row.id)
    except HeraldError as exc:
        st.error(md(str(exc)))
        return
    runs_col, changes_col = st.columns(2)
    with runs_col:
        st.markdown("**Runs**")
        if past.runs:
            st.dataframe(view.runs_table(past.runs, viewer_zone(row.timezone)),
                         hide_index=True, key="schedule_runs",
                         column_config={"Run": st.column_config.NumberColumn(format="%d"),
                                        "Error": st.column_config.TextColumn(width="large")})
        else:
            st.caption("No runs yet.")
    with changes_col:
        st.markdown("**Changes**")
        if past.changes:  # a table, not a grid: "old → new" wraps instead of being cut
            with st.container(key="schedule_changes"):
                st.table(md_table(changes_table(past.changes, viewer_zone(st.context.timezone))),
                         hide_index=True)
        else:
            st.caption("No changes recorded.")


def flash_sent(here: ui.Here, sent: SentRun) -> NoReturn:
    """Say what became of the run a send created, after the rerun."""
    past = schedules.schedule_history(here.session, here.viewer, sent.schedule_id, limit=5).runs
    ui.flash(view.FLASH, *view.sent_message(
        sent, next((r["error"] for r in past if r["id"] == sent.run_id), None)))
    st.rerun()


def picked_in_list() -> None:
    ui.pick("schedule", st.session_state["schedule_pick"])


if __name__ == "__main__":
    page()
