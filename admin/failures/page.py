"""Failures: the tenant's failed deliveries over a window (the last 7 days unless chosen),
grouped by cause, e.g. "… 550 5.1.1 <address>: user unknown × 14", with the schedules and
recipients behind each group; an editor pauses a group's schedules or sends its runs again.

Layout only: every read and write is `services.failures` on `ui.db()`; each `HeraldError` it
raises is shown as its one sentence. Viewers see the groups, not the buttons.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import streamlit as st

from admin import ui
from admin.failures import view
from admin.format import md, when
from models.errors import HeraldError
from services import failures
from services.access import Action
from services.failure_records import FailureGroup


def page() -> None:
    here = ui.here(view.now())
    st.title("Failures")
    for kind, sentence in st.session_state.pop(view.FLASH, []):
        getattr(st, kind)(md(sentence))
    days = st.columns([1, 3])[0].selectbox("Window", list(view.WINDOWS), key=view.WINDOW,
                                          format_func=view.WINDOWS.get,
                                          index=list(view.WINDOWS).index(view.DEFAULT_WINDOW))
    since, until = here.now - timedelta(days=days), here.now
    try:
        groups = failures.failure_groups(here.session, here.viewer, here.tenant.id, since=since,
                                         until=until)
    except HeraldError as exc:
        st.error(md(str(exc)))
        st.stop()
    can_edit = here.viewer.may(here.tenant.id, Action.EDIT)
    if not groups:
        st.success(f"No failed deliveries in the {view.WINDOWS[days].lower()}.")
    else:
        total = sum(g.count for g in groups)
        st.caption(f"{total} failed deliveries in the {view.WINDOWS[days].lower()}, by cause, the "
                   f"largest first; addresses and ids are left out of a cause. Times in "
                   f"{here.tenant.timezone}."
                   + ("" if can_edit else " Editors and admins can pause or resend from here."))
    for group in groups:
        group_view(here, group, since, until, can_edit)


def group_view(here: ui.Here, group: FailureGroup, since: datetime, until: datetime,
               can_edit: bool) -> None:
    zone = ZoneInfo(here.tenant.timezone)
    with st.container(border=True, key=f"failure_{group.key}"):
        st.markdown(f"**{md(view.group_title(group))}**")
        st.caption(md(f"{group.channel} · last seen {when(group.last_seen.astimezone(zone))}"
                      f" · e.g. {group.example}"))
        st.markdown(f"**Schedules:** {md(view.group_schedules(group))}  \n"
                    f"**Recipients:** {md(view.group_recipients(group))}")
        if not can_edit:
            return
        pause, resend, _ = st.columns([2, 2, 3])
        stoppable = view.pausable(group)
        if pause.button("Pause the affected schedules", key=f"pause_{group.key}",
                        disabled=not stoppable, width="stretch",
                        help=f"Pauses {stoppable} schedule(s) until someone resumes them."):
            act(here, lambda: failures.pause_affected(here.session, here.viewer, here.tenant.id,
                                                      group.key, since=since, until=until,
                                                      now=here.now),
                lambda result: [view.pause_message(result)])
        if resend.button("Resend failed", key=f"resend_{group.key}", disabled=not group.open_runs,
                         width="stretch",
                         help=f"Sends the failed deliveries of {group.open_runs} partial or failed "
                              f"run(s) again, and only those."):
            act(here, lambda: failures.resend_group(here.session, here.viewer, here.tenant.id,
                                                    group.key, since=since, until=until,
                                                    now=here.now),
                view.group_resend_messages)


def act(here: ui.Here, action: Callable[[], Any],
        messages: Callable[[Any], list[tuple[str, str]]]) -> None:
    """Run a group's action and show what it did (or its one-sentence refusal) after the
    rerun that follows."""
    try:
        done = action()
    except HeraldError as exc:
        here.session.rollback()
        st.session_state[view.FLASH] = [("error", str(exc))]
    else:
        st.session_state[view.FLASH] = messages(done)
    st.rerun()


if __name__ == "__main__":
    page()
