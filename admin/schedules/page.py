"""Schedules: the tenant's schedules (filter, sort, pick one), create and edit with a live cron
helper, pause or resume, delete, send now, send a test, and the picked schedule's history.

Layout only: the table is `services.schedule_table`, the form `services.schedule_form`, the
changes `services.schedules`, the sends `services.runs`, all on `ui.db()`; each `HeraldError`
they raise is shown as its one sentence. The picked schedule's id is kept in the URL
(`?schedule=N`). Editors and admins get the buttons; viewers read.
"""

from __future__ import annotations

import functools
import zoneinfo
from typing import NoReturn

import streamlit as st

from admin import ui
from admin.format import changes_table, viewer_zone, when
from admin.schedules import cron_helper, view
from models.errors import HeraldError
from services import runs, schedules
from services.access import Action
from services.runs import SentRun
from services.schedule_form import ScheduleForm, schedule_form_defaults
from services.schedule_table import ScheduleRow, list_schedules


def page() -> None:
    here = ui.here(view.now())
    can_edit = here.viewer.may(here.tenant.id, Action.EDIT)
    st.title("Schedules")
    if view.FLASH in st.session_state:
        show(*st.session_state.pop(view.FLASH))
    try:
        rows = list_schedules(here.session, here.viewer, here.tenant.id)
    except HeraldError as exc:
        st.error(str(exc))
        st.stop()
    by_id = {r.id: r for r in rows}
    try:
        selected = int(st.query_params.get("schedule", ""))
    except ValueError:
        selected = None
    if selected not in by_id:  # none, gone, or not this tenant's
        selected = None
        ui.pick("schedule", None)
    if halted := [r for r in rows if r.paused_reason and r.id != selected]:
        st.warning("Paused by herald after failing in a row: " + ", ".join(
            f"#{r.id} {r.report_title}" for r in halted) + ". Pick one to see why and resume it.")
    shown_ids = table(rows, selected, can_edit)
    picker(here, by_id, shown_ids, selected, can_edit)
    if can_edit:
        schedule_form(here, selected)
    if selected is not None:
        picked(here, by_id[selected], can_edit)


def table(rows: list[ScheduleRow], selected: int | None, can_edit: bool) -> list[int]:
    """The filtered, sorted table; returns the ids it shows, in order."""
    text_col, status_col, sort_col, paused_col = st.columns([3, 1, 1, 1], vertical_alignment="bottom")
    needle = text_col.text_input("Filter", key="schedules_filter",
                                 placeholder="report, recipient or words, e.g. daily")
    status = status_col.selectbox("Last status", view.STATUSES, key="schedules_status")
    order = sort_col.selectbox("Sort by", view.SORTS, key="schedules_sort")
    show_paused = paused_col.checkbox("Show paused", value=True, key="schedules_show_paused")
    shown = view.sort_rows([r for r in rows if view.matches(r, needle, status, show_paused)], order)
    shown_ids = [r.id for r in shown]
    # The grid keeps its own selection; when the picked schedule changed elsewhere (the list,
    # the URL, a save or delete) or the rows moved, a fresh grid starts from the picked row.
    grid = view.table_grid(st.session_state, selected, shown_ids)
    st.session_state[view.TABLE_IDS] = shown_ids
    if not rows:
        st.info("No schedules yet." + (" Press New schedule to add one." if can_edit else ""))
        return shown_ids
    with st.container(key="schedules_table"):
        picked_row = functools.partial(ui.picked_in_grid, "schedule", grid.key, view.TABLE_IDS)
        st.dataframe(view.highlighted(view.table(shown)), hide_index=True, key=grid.key,
                     on_select=picked_row,
                     selection_mode="single-row", selection_default=grid.default,
                     column_config={"⚠": st.column_config.TextColumn(width=32),
                                    "Id": st.column_config.NumberColumn(format="%d", width="small"),
                                    "Paused": st.column_config.CheckboxColumn()})
    st.caption(f"{len(shown)} of {len(rows)} schedules. Click a row, or pick one below; "
               f"click a column header to sort by it. {view.STRIP_LEGEND}")
    return shown_ids


def picker(here: ui.Here, by_id: dict[int, ScheduleRow], shown_ids: list[int],
           selected: int | None, can_edit: bool) -> None:
    pick_col, new_col = st.columns([4, 1], vertical_alignment="bottom")
    options = [None, *shown_ids] + ([selected] if selected and selected not in shown_ids else [])
    st.session_state["schedule_pick"] = selected
    pick_col.selectbox("Schedule", options, key="schedule_pick", on_change=picked_in_list,
                       placeholder="Pick a schedule to see its history and actions",
                       format_func=lambda i: "—" if i is None else view.label(by_id[i]))
    if can_edit and new_col.button("New schedule", key="schedule_new", width="stretch"):
        open_form(here, None)


# --- the create/edit form (plain widgets, not st.form: the cron helper follows each change) ----

def schedule_form(here: ui.Here, selected: int | None) -> None:
    form_state = st.session_state.get(view.FORM)
    if form_state and (form_state["tenant"] != here.tenant.id
                       or form_state["id"] is not None and form_state["id"] != selected):
        close_form()  # another tenant or schedule was picked: its own New or Edit opens it
        return
    if not form_state:
        return
    state = st.session_state
    for key, value in form_state["initial"].items():
        state.setdefault(key, value)
    editing = form_state["id"]
    with st.container(border=True, key="schedule_form"):
        st.subheader(f"Edit schedule {editing}" if editing else "New schedule")
        errors = st.container()
        try:
            form = schedule_form_defaults(here.session, here.viewer, here.tenant.id, editing,
                                          report=state.get("form_report"))
        except HeraldError as exc:
            close_form()
            failed(here, exc)
        titles = {r.slug: r.title for r in form.reports}
        if not titles:
            st.info("This tenant has no reports yet; add one on the Reports page first.")
        st.selectbox("Report", list(titles), key="form_report",
                     format_func=lambda s: f"{titles[s]} ({s})")
        timing_fields(here, form)
        recipient_fields(form)
        report_parameters(form)
        st.checkbox("Paused", key="form_paused")
        save_col, cancel_col, _ = st.columns([1, 1, 6])
        save = save_col.button("Save", key="form_save", type="primary", disabled=not titles)
        if cancel_col.button("Cancel", key="form_cancel"):
            close_form()
            st.rerun()
        if save:
            save_form(here, form, editing, errors)


def timing_fields(here: ui.Here, form: ScheduleForm) -> None:
    """Cadence or cron and the timezone, beside the live helper: the expression in words and the
    next five fire times in the schedule's zone, the viewer's and UTC, with DST notes."""
    state = st.session_state
    zone_names = sorted(zoneinfo.available_timezones())
    timing_col, helper_col = st.columns([2, 3])
    with timing_col:
        timing = st.radio("Timing", list(view.TIMINGS), key="form_timing", horizontal=True,
                          format_func=view.TIMINGS.get)
        if timing == "cadence":
            st.selectbox("Cadence", list(view.CADENCES), key="form_cadence",
                         format_func=view.CADENCES.get)
            st.text_input("At (HH:MM)", key="form_time", placeholder="09:00")
        else:
            st.text_input("Cron expression", key="form_cron", placeholder="30 2 * * 1-5",
                          help="minute hour day-of-month month day-of-week")
        zones = zone_names if state["form_timezone"] in zone_names else [state["form_timezone"],
                                                                          *zone_names]
        st.selectbox("Timezone", zones, key="form_timezone",
                     help=f"Type to search; the tenant's is {form.tenant_timezone}.")
    with helper_col:
        # "From" lets a user look at a DST change or a month end before it comes.
        start = st.date_input("Show fire times from", value=here.now.date(), key="form_preview_from",
                              help="The next five fire times after this day begins (UTC); "
                                   "today by default.")
        try:
            preview = cron_helper.preview(
                timezone=state["form_timezone"], now=view.preview_start(start, here.now),
                cron_expr=None if timing == "cadence" else state.get("form_cron"),
                cadence=state.get("form_cadence") if timing == "cadence" else None,
                at=state.get("form_time") if timing == "cadence" else None,
                viewer_timezone=st.context.timezone)
        except HeraldError as exc:
            st.error(str(exc))
            return
        st.markdown(f"**{preview.description}** · `{preview.expression}`")
        with st.container(key="fire_times"):
            st.caption("The next five fire times" + ("" if start == here.now.date()
                                                     else f" from {start:%d %b %Y}"))
            st.table(view.fire_times(preview), hide_index=True)
        dst_notes, warnings = view.split_notes(preview)
        for note in dst_notes:
            st.info(note)
        for warning in warnings:
            st.warning(warning)


def recipient_fields(form: ScheduleForm) -> None:
    """Formats, channels, recipients, subject, spread and the send condition."""
    formats_col, channels_col = st.columns(2)
    formats_col.multiselect("Formats", view.FORMATS, key="form_formats")
    channels_col.multiselect("Channels", view.CHANNELS, key="form_channels",
                             help="Empty: those of the recipients given, else both.")
    emails_col, chats_col = st.columns(2)
    emails_col.text_area("E-mail recipients, one per line", key="form_emails")
    chats_col.text_area("Telegram chat ids, one per line", key="form_chats")
    st.caption(f"When a channel names nobody here: {form.fallback_text}. "
               f"At most {form.max_recipients} recipients in all.")
    st.text_input("Subject", key="form_subject", placeholder="{title} for {date}",
                  help="Empty: the default subject.")
    st.caption(f"Placeholders: {view.PLACEHOLDERS}")
    st.text_input("Spread over (seconds)", key="form_spread", placeholder="the tenant's",
                  help="Run at this schedule's own second within this many seconds after each "
                       "slot, so thousands of 09:00 reports do not start at once. 0: on the slot.")
    st.selectbox("Send", list(view.SEND_IF_CHOICES), key="form_send_if",
                 format_func=view.SEND_IF_CHOICES.get,
                 help="A run whose condition is not met ends SKIPPED, with the reason in "
                      "History, and sends nothing.")


def report_parameters(form: ScheduleForm) -> None:
    state = st.session_state
    if form.params:
        st.markdown("**Report parameters**")
    for param in form.params:
        key = view.param_key(state.get("form_report"), param.name)
        state.setdefault(key, view.param_start(param))
        hint = f"Default: {param.default!r}"
        if param.kind == "bool":
            st.checkbox(param.name, key=key, help=hint)
        elif param.kind == "int":
            st.number_input(param.name, key=key, step=1, help=hint)
        elif param.kind == "float":
            st.number_input(param.name, key=key, step=0.1, format="%g", help=hint)
        else:
            st.text_input(param.name, key=key, help=hint)


def save_form(here: ui.Here, form: ScheduleForm, editing: int | None, errors) -> None:
    try:
        with here.session.begin_nested():  # a refused save leaves nothing behind
            saved = schedules.save_schedule(here.session, here.viewer, here.tenant.id,
                                            view.form_values(st.session_state, form.params),
                                            now=here.now, schedule_id=editing)
    except HeraldError as exc:
        errors.error(str(exc))
        return
    close_form()
    ui.pick("schedule", saved.id)
    flash("success", f"Schedule {saved.id} saved.")
    st.rerun()


# --- the picked schedule: its actions and its history ------------------------------------------

def picked(here: ui.Here, row: ScheduleRow, can_edit: bool) -> None:
    st.subheader(f"Schedule {row.id}: {row.report_title}")
    st.caption(f"{row.description or row.cron} ({row.timezone}) · "
               + ("paused" if row.paused else f"next {when(row.next_run_local)}")
               + f" · to {row.recipients_text}")
    if row.paused_reason:  # herald paused it: why, with the Resume button right below
        st.warning(view.paused_by_herald(row) + (" Fix the cause, then press Resume." if can_edit
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
            failed(here, exc)
        flash("success", f"Schedule {row.id} {'resumed' if row.paused else 'paused'}.")
        st.rerun()
    if send_col.button("Send now", key="schedule_send_now", width="stretch"):
        try:
            sent = runs.send_now(here.session, here.viewer, row.id, now=here.now)
        except HeraldError as exc:
            failed(here, exc)
        flash_sent(here, sent)
    if delete_col.button("Delete", key="schedule_delete", width="stretch"):
        st.session_state[view.CONFIRM_DELETE] = row.id
    if st.session_state.get(view.CONFIRM_DELETE) != row.id:
        return
    with st.container(border=True, key="delete_confirmation"):
        st.warning(f"Delete schedule {row.id} ({row.report_title}, {row.description or row.cron})? "
                   f"It stops firing and leaves this table; its runs and change history are kept.")
        yes_col, no_col, _ = st.columns([1, 1, 4])
        if yes_col.button(f"Delete schedule {row.id}", key="schedule_delete_confirm",
                          type="primary"):
            st.session_state.pop(view.CONFIRM_DELETE, None)
            try:
                schedules.delete(here.session, here.viewer, row.id, now=here.now)
            except HeraldError as exc:
                failed(here, exc)
            ui.pick("schedule", None)
            flash("success", f"Schedule {row.id} deleted; its runs and change history are kept.")
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
                failed(here, exc)
            flash_sent(here, sent)


def history(here: ui.Here, row: ScheduleRow) -> None:
    """The schedule's runs beside its changes (the admin's and the CLI's)."""
    try:
        past = schedules.schedule_history(here.session, here.viewer, row.id)
    except HeraldError as exc:
        st.error(str(exc))
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
                st.table(changes_table(past.changes, viewer_zone(st.context.timezone)),
                         hide_index=True)
        else:
            st.caption("No changes recorded.")


# --- the page's state between runs -------------------------------------------------------------

def flash(kind: str, sentence: str) -> None:
    """Show `sentence` after the rerun that follows an action."""
    st.session_state[view.FLASH] = (kind, sentence)


def show(kind: str, sentence: str) -> None:
    getattr(st, kind)(sentence)


def failed(here: ui.Here, exc: HeraldError) -> NoReturn:
    """A refused action: nothing of it is written; its sentence shows after the rerun."""
    here.session.rollback()
    flash("error", str(exc))
    st.rerun()


def flash_sent(here: ui.Here, sent: SentRun) -> NoReturn:
    """Say what became of the run a send created, after the rerun."""
    past = schedules.schedule_history(here.session, here.viewer, sent.schedule_id, limit=5).runs
    flash(*view.sent_message(sent, next((r["error"] for r in past if r["id"] == sent.run_id), None)))
    st.rerun()


def picked_in_list() -> None:
    ui.pick("schedule", st.session_state["schedule_pick"])


def open_form(here: ui.Here, schedule_id: int | None) -> None:
    try:
        form = schedule_form_defaults(here.session, here.viewer, here.tenant.id, schedule_id)
    except HeraldError as exc:
        failed(here, exc)
    for key in [k for k in st.session_state if str(k).startswith("form_")]:
        del st.session_state[key]
    st.session_state[view.FORM] = {"id": schedule_id, "tenant": here.tenant.id,
                                   "initial": view.form_start(form)}
    st.rerun()


def close_form() -> None:
    st.session_state.pop(view.FORM, None)


if __name__ == "__main__":
    page()
