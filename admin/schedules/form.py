"""The Schedules page's create/edit form: report, cadence or cron with the live cron helper,
timezone, formats, channels, recipients, subject, spread, send condition and the report's
typed parameters; Save writes through `services.schedules.save_schedule`.

Plain widgets, not st.form: the cron helper follows each change. The form's widget keys start
with "form_"; what it started from is kept under `view.FORM` while it is open.
"""

from __future__ import annotations

import zoneinfo

import streamlit as st

from admin import ui
from admin.format import md
from admin.schedules import cron_helper, view
from models.errors import HeraldError
from services import schedules
from services.schedule_form import ScheduleForm, schedule_form_defaults


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
            ui.refused(here, view.FLASH, exc)
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
            st.error(md(str(exc)))
            return
        # A valid expression (else the helper raised) holds no backtick to end the code span.
        st.markdown(f"**{md(preview.description)}** · `{preview.expression}`")
        with st.container(key="fire_times"):
            st.caption("The next five fire times" + ("" if start == here.now.date()
                                                     else f" from {start:%d %b %Y}"))
            st.table(view.fire_times(preview), hide_index=True)
        dst_notes, warnings = view.split_notes(preview)
        for note in dst_notes:
            st.info(md(note))
        for warning in warnings:
            st.warning(md(warning))


def recipient_fields(form: ScheduleForm) -> None:
    """Formats, channels, recipients, subject, spread and the send condition."""
    formats_col, channels_col = st.columns(2)
    formats_col.multiselect("Formats", view.FORMATS, key="form_formats")
    channels_col.multiselect("Channels", view.CHANNELS, key="form_channels",
                             help="Empty: those of the recipients given, else both.")
    emails_col, chats_col = st.columns(2)
    emails_col.text_area("E-mail recipients, one per line", key="form_emails")
    chats_col.text_area("Telegram chat ids, one per line", key="form_chats")
    st.caption(md(f"When a channel names nobody here: {form.fallback_text}. "
                  f"At most {form.max_recipients} recipients in all."))
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
        label, hint = md(param.name), md(f"Default: {param.default!r}")
        if param.kind == "bool":
            st.checkbox(label, key=key, help=hint)
        elif param.kind == "int":
            st.number_input(label, key=key, step=1, help=hint)
        elif param.kind == "float":
            st.number_input(label, key=key, step=0.1, format="%g", help=hint)
        else:
            st.text_input(label, key=key, help=hint)


def save_form(here: ui.Here, form: ScheduleForm, editing: int | None, errors) -> None:
    try:
        with here.session.begin_nested():  # a refused save leaves nothing behind
            saved = schedules.save_schedule(here.session, here.viewer, here.tenant.id,
                                            view.form_values(st.session_state, form.params),
                                            now=here.now, schedule_id=editing)
    except HeraldError as exc:
        errors.error(md(str(exc)))
        return
    close_form()
    ui.pick("schedule", saved.id)
    ui.flash(view.FLASH, "success", f"Schedule {saved.id} saved.")
    st.rerun()


def open_form(here: ui.Here, schedule_id: int | None) -> None:
    try:
        form = schedule_form_defaults(here.session, here.viewer, here.tenant.id, schedule_id)
    except HeraldError as exc:
        ui.refused(here, view.FLASH, exc)
    for key in [k for k in st.session_state if str(k).startswith("form_")]:
        del st.session_state[key]
    st.session_state[view.FORM] = {"id": schedule_id, "tenant": here.tenant.id,
                                   "initial": view.form_start(form)}
    st.rerun()


def close_form() -> None:
    st.session_state.pop(view.FORM, None)
