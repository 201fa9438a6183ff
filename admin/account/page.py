"""My account: the signed-in user's e-mail, tenants and roles, and a form to change their
own password. Every user gets it, with or without tenants.

Layout only: `services.accounts` reads and writes. After a change this session stays signed
in (with its other tabs) and every other session of the account ends.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from admin import ui
from admin.format import md, viewer_zone, when
from models.db import utcnow
from models.errors import HeraldError
from services import accounts
from services.access import Viewer

DONE = "account_password_changed"  # the sentence to show after the rerun that empties the form
GENERATION = "account_generation"  # bumped after a change: the fields' keys carry it


def page() -> None:
    viewer = ui.current_viewer()
    zone = viewer_zone(st.context.timezone)
    st.title("My account")
    mine = accounts.my_account(ui.db(), viewer)
    st.markdown(f"Signed in as **{md(mine.email)}**.")
    last_login = when(mine.last_login_at.astimezone(zone)) if mine.last_login_at else "never"
    changed = when(mine.password_changed_at.astimezone(zone)) if mine.password_changed_at else "never"
    st.caption(f"Last login: {last_login} · password last changed: {changed}")
    if mine.tenants:
        st.dataframe(pd.DataFrame(mine.tenants, columns=["Tenant", "Your role"]), hide_index=True)
    else:
        st.info("You are not a member of any tenant yet; ask a tenant admin to add you.")
    password_form(viewer)


def password_form(viewer: Viewer) -> None:
    fresh = st.session_state.get(GENERATION, 0)
    st.subheader("Change your password")
    done = st.session_state.pop(DONE, None)
    if done:
        st.success(done)
    with st.form(f"password_{fresh}"):
        current = st.text_input("Current password", type="password",
                                autocomplete="current-password")
        new = st.text_input("New password", type="password", autocomplete="new-password",
                            help=f"At least {accounts.MIN_PASSWORD} characters.")
        confirm = st.text_input("New password again", type="password", autocomplete="new-password")
        submitted = st.form_submit_button("Change password")
    if not submitted:
        return
    now = utcnow()
    try:
        accounts.change_own_password(ui.db(), viewer, current, new, confirm, now,
                                     keep=ui.session_id())
    except HeraldError as exc:
        st.error(md(str(exc)))
    else:
        st.session_state[DONE] = ("Password changed. Every other session of this account has "
                                  "ended; this one stays signed in.")
        st.session_state[GENERATION] = fresh + 1
        st.rerun()


if __name__ == "__main__":
    page()
