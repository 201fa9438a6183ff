"""Members: the tenant's people (role, account, last login, a lock on password changes), adding one, changing a role,
deactivating a membership (after a confirmation), the tenant's fallback recipients, and the
recent changes to both (the admin's and the CLI's). For the tenant's admins only; anyone
else gets one sentence.

Layout only: members are `services.members`, fallback recipients `services.tenants`, on
`ui.db()`, each write run in a savepoint so a refusal leaves nothing behind and shows its one
sentence. A new member's generated password is shown once, right after they are added, and
kept nowhere else.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import pandas as pd
import streamlit as st

from admin import ui
from admin.format import change_text, md, md_table, viewer_zone, when
from models.db import utcnow
from models.errors import HeraldError
from models.settings import get_settings
from models.tenancy import Role
from services import members, tenants
from services.access import Action
from services.members import AddedMember, MemberRow

NOT_ADMIN = "Only the tenant's admins manage its members."
FLASH = "members_flash"  # (kind, sentence, generated password or None) to show after a rerun
CONFIRM = "members_confirm_deactivate"  # the user id whose deactivation awaits confirmation
# Bumped after each change: the inputs' keys carry it, so each change starts them afresh (a
# browser keeps what a field showed while its key stays the same).
GENERATION = "members_generation"
ROLES = [r.value for r in Role]


def page() -> None:
    here = ui.here(utcnow())
    st.title("Members")
    if not here.viewer.may(here.tenant.id, Action.MANAGE):
        st.info(NOT_ADMIN)
        st.stop()
    if FLASH in st.session_state:
        kind, sentence, password = st.session_state.pop(FLASH)
        getattr(st, kind)(md(sentence))
        if password:
            st.code(password, language=None)
    try:
        rows = members.list_members(here.session, here.viewer, here.tenant.id, now=here.now)
    except HeraldError as exc:
        st.error(md(str(exc)))
        st.stop()
    members_table(rows)
    add_member(here)
    picked_member(here, {r.user_id: r for r in rows})
    fallback_recipients(here)
    recent_changes(here)


def members_table(rows: list[MemberRow]) -> None:
    with st.container(key="members_table"):
        st.dataframe(pd.DataFrame(
            [{"Email": r.email + (" (you)" if r.you else ""), "Role": r.role,
              "Account": "active" if r.account_active else "deactivated",
              "Last login": moment(r.last_login_at) or "never",
              "Password changes locked until": moment(r.locked_until) or "—"} for r in rows],
            columns=["Email", "Role", "Account", "Last login", "Password changes locked until"]),
            hide_index=True)
    st.caption(f"{len(rows)} members. Viewers read, editors also change schedules and reports "
               f"and send, admins also manage members and fallback recipients.")


def add_member(here: ui.Here) -> None:
    fresh = st.session_state.get(GENERATION, 0)
    with st.form("member_add"):
        st.markdown("**Add member**")
        email_col, role_col = st.columns([3, 1])
        email = email_col.text_input("E-mail", key=f"member_add_email_{fresh}",
                                     placeholder="name@example.com")
        role = role_col.selectbox("Role", ROLES, key=f"member_add_role_{fresh}")
        errors = st.container()
        submitted = st.form_submit_button("Add member")
    if submitted:
        act(here, errors, lambda: members.add_member(here.session, here.viewer, here.tenant.id,
                                                     email, role, now=here.now),
            lambda result: added(result, here.tenant.name))
    st.caption("Someone who already has a herald account keeps their password and their other "
               "tenants; a new account gets a generated password, shown once.")


def picked_member(here: ui.Here, by_id: dict[int, MemberRow]) -> None:
    """The member picked: change their role, or deactivate them after a confirmation."""
    fresh = st.session_state.get(GENERATION, 0)
    picked = st.selectbox("Member", list(by_id), key=f"member_pick_{fresh}", index=None,
                          placeholder="Pick a member to change their role or deactivate them",
                          format_func=lambda i: f"{by_id[i].email} ({by_id[i].role})")
    if picked is None:
        return
    member, name = by_id[picked], here.tenant.name
    errors = st.container()
    role_col, change_col, deactivate_col, _ = st.columns([2, 1, 1, 2], vertical_alignment="bottom")
    new_role = role_col.selectbox("New role", ROLES, index=ROLES.index(member.role),
                                  key=f"member_role_{picked}_{fresh}")
    if change_col.button("Change role", key="member_change_role", width="stretch"):
        act(here, errors, lambda: members.change_role(here.session, here.viewer, here.tenant.id,
                                                      picked, new_role, now=here.now),
            lambda row: ("success", f"{row.email} is now {row.role} of {name}.", None),
            keep_picked=picked)
    if deactivate_col.button("Deactivate", key="member_deactivate", width="stretch"):
        st.session_state[CONFIRM] = picked
    if st.session_state.get(CONFIRM) != picked:
        return
    with st.container(border=True, key="deactivate_confirmation"):
        st.warning(md(f"Deactivate {member.email} in {name}? They lose access to this tenant "
                      f"at once; their account, password and other tenants stay as they are, "
                      f"and adding them again restores access."))
        yes_col, no_col, _ = st.columns([2, 1, 3])
        if yes_col.button(md(f"Deactivate {member.email}"), key="member_deactivate_confirm",
                          type="primary"):
            st.session_state.pop(CONFIRM, None)
            act(here, errors, lambda: members.deactivate(here.session, here.viewer,
                                                         here.tenant.id, picked),
                lambda _: ("success", f"{member.email} no longer has access to {name}.", None))
        if no_col.button("Cancel", key="member_deactivate_cancel"):
            st.session_state.pop(CONFIRM, None)
            st.rerun()


def fallback_recipients(here: ui.Here) -> None:
    fresh = st.session_state.get(GENERATION, 0)
    st.subheader("Fallback recipients")
    limit = get_settings().max_recipients
    st.caption(f"A schedule that names nobody on a channel sends to these; at most {limit}.")
    errors = st.container()
    recipients = tenants.list_fallback_recipients(here.session, here.viewer, here.tenant.id)
    if not recipients:
        st.caption("None yet: a schedule without recipients of its own on a channel sends to "
                   "nobody there.")
    for recipient in recipients:
        text_col, remove_col, _ = st.columns([3, 1, 2], vertical_alignment="center")
        text_col.text(f"{recipient.channel}: {recipient.address}")
        if remove_col.button("Remove", key=f"fallback_remove_{recipient.id}"):
            act(here, errors, lambda r=recipient: tenants.remove_fallback_recipient(
                    here.session, here.viewer, here.tenant.id, r.id),
                lambda _, r=recipient: ("success", f"{r.address} is no longer a fallback "
                                                   f"recipient.", None))
    channel_col, address_col, add_col = st.columns([1, 3, 1], vertical_alignment="bottom")
    channel = channel_col.selectbox("Channel", ["email", "telegram"],
                                    key=f"fallback_channel_{fresh}")
    address = address_col.text_input("Address or chat id", key=f"fallback_address_{fresh}",
                                     placeholder="ops@example.com, or -1001234567890 for a group")
    if add_col.button("Add recipient", key="fallback_add", width="stretch"):
        act(here, errors, lambda: tenants.add_fallback_recipient(here.session, here.viewer,
                                                                 here.tenant.id, channel, address),
            lambda r: ("success", f"{r.address} is now a fallback recipient on {r.channel}.", None))


def recent_changes(here: ui.Here) -> None:
    st.subheader("Recent changes")
    changes = members.member_changes(here.session, here.viewer, here.tenant.id)
    if not changes:
        st.caption("No changes recorded.")
        return
    with st.container(key="member_changes"):
        st.table(md_table(pd.DataFrame(
            [{"When": moment(c.at), "Who": c.actor, "Action": c.action, "Member": c.subject,
              "What": change_text(c)} for c in changes],
            columns=["When", "Who", "Action", "Member", "What"])), hide_index=True)


def act(here: ui.Here, errors, write: Callable[[], object], done: Callable[[object], tuple],
        keep_picked: int | None = None) -> None:
    """Run `write` in a savepoint; on success show `done(result)` after a rerun (with the inputs
    emptied, and `keep_picked` still the picked member), else its error sentence in `errors`,
    with nothing written."""
    try:
        with here.session.begin_nested():
            result = write()
    except HeraldError as exc:
        errors.error(md(str(exc)))
        return
    fresh = st.session_state.get(GENERATION, 0)
    st.session_state[FLASH] = done(result)
    st.session_state[GENERATION] = fresh + 1
    if keep_picked is not None:
        st.session_state[f"member_pick_{fresh + 1}"] = keep_picked
    st.rerun()


def added(result: AddedMember, tenant_name: str) -> tuple:
    who = f"{result.member.email} is now {result.member.role} of {tenant_name}"
    if result.temporary_password is None:
        return "success", f"{who}; they log in with their existing password.", None
    return ("success", f"{who}, with a new account. Hand them this password privately; "
                       f"it is shown only now:", result.temporary_password)


def moment(value: datetime | None) -> str | None:
    return when(value.astimezone(viewer_zone(st.context.timezone))) if value else None


if __name__ == "__main__":
    page()
