"""Failures: the tenant's failed deliveries over a window (the last 7 days unless chosen),
grouped by cause, e.g. "… 550 5.1.1 <address>: user unknown × 14", with the schedules and
recipients behind each group; an editor pauses a group's schedules or sends its runs again.

Layout only: every read and write is a function of `admin/failures.py` on `ui.db()`; each
`HeraldError` they raise is shown as its one sentence. Viewers see the groups, not the buttons.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import streamlit as st

from admin import failures as data
from admin import history_view as view
from admin import ui
from admin.access import Action
from admin.failure_records import FailureGroup
from admin.schedules_view import when
from models.errors import HeraldError

viewer, tenant = ui.current()
session = ui.db()
now = view.now()
zone = ZoneInfo(tenant.timezone)
can_edit = viewer.may(tenant.id, Action.EDIT)
state = st.session_state


def act(action: Callable[[], Any], messages: Callable[[Any], list[tuple[str, str]]]) -> None:
    """Run a group's action and show what it did (or its one-sentence refusal) after the
    rerun that follows."""
    try:
        done = action()
    except HeraldError as exc:
        session.rollback()
        state[view.FAILURES_FLASH] = [("error", str(exc))]
    else:
        state[view.FAILURES_FLASH] = messages(done)
    st.rerun()


def group_view(group: FailureGroup, since: datetime, until: datetime) -> None:
    with st.container(border=True, key=f"failure_{group.key}"):
        st.markdown(f"**{view.md(view.group_title(group))}**")
        st.caption(view.md(f"{group.channel} · last seen {when(group.last_seen.astimezone(zone))}"
                           f" · e.g. {group.example}"))
        st.markdown(f"**Schedules:** {view.md(view.group_schedules(group))}  \n"
                    f"**Recipients:** {view.md(view.group_recipients(group))}")
        if not can_edit:
            return
        pause, resend, _ = st.columns([2, 2, 3])
        stoppable = view.pausable(group)
        if pause.button("Pause the affected schedules", key=f"pause_{group.key}",
                        disabled=not stoppable, width="stretch",
                        help=f"Pauses {stoppable} schedule(s) until someone resumes them."):
            act(lambda: data.pause_affected(session, viewer, tenant.id, group.key, since=since,
                                            until=until, now=now),
                lambda result: [view.pause_message(result)])
        if resend.button("Resend failed", key=f"resend_{group.key}", disabled=not group.open_runs,
                         width="stretch",
                         help=f"Sends the failed deliveries of {group.open_runs} partial or failed "
                              f"run(s) again, and only those."):
            act(lambda: data.resend_group(session, viewer, tenant.id, group.key, since=since,
                                          until=until, now=now),
                view.group_resend_messages)


st.title("Failures")
for kind, sentence in state.pop(view.FAILURES_FLASH, []):
    getattr(st, kind)(sentence)

days = st.columns([1, 3])[0].selectbox("Window", list(view.WINDOWS), key=view.WINDOW,
                                      format_func=view.WINDOWS.get,
                                      index=list(view.WINDOWS).index(view.DEFAULT_WINDOW))
since, until = now - timedelta(days=days), now
try:
    groups = data.failure_groups(session, viewer, tenant.id, since=since, until=until)
except HeraldError as exc:
    st.error(str(exc))
    st.stop()

if not groups:
    st.success(f"No failed deliveries in the {view.WINDOWS[days].lower()}.")
else:
    total = sum(g.count for g in groups)
    st.caption(f"{total} failed deliveries in the {view.WINDOWS[days].lower()}, by cause, the "
               f"largest first; addresses and ids are left out of a cause. Times in "
               f"{tenant.timezone}."
               + ("" if can_edit else " Editors and admins can pause or resend from here."))
for group in groups:
    group_view(group, since, until)
