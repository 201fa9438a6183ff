"""The admin's entry script: `herald admin` serves it through `admin/server.py`, which adds the
session cookie's route (`streamlit run admin/app.py` runs it without: no cookie, one tab each).

Every run opens herald's database once; an anonymous or idle visitor gets only the login
page, a logged-in one the sidebar (e-mail, tenant picker, Log out) and the pages. The login
page answers at every page's URL, query kept, so a link (`/history?run=7&tenant=acme`) lands
where it pointed once the visitor has logged in; the session cookie keeps them signed in
across reloads, tabs and links (`services.admin_sessions`).
"""

from __future__ import annotations

import os
from collections.abc import Callable

import streamlit as st

from admin import ui
from admin.format import md
from models.db import utcnow
from models.errors import LoginRefused
from models.settings import get_settings
from services.access import Action, visible_tenants
from services.accounts import authenticate


def login() -> None:
    """The login form: e-mail and password, checked against the database, from this browser's
    address (failures slow that address down, `services.login_throttle`)."""
    st.title("herald admin")
    notice = ui.take_notice()
    if notice:
        st.info(md(notice))
    with st.form("login"):
        email = st.text_input("Email", autocomplete="username")
        password = st.text_input("Password", type="password", autocomplete="current-password")
        submitted = st.form_submit_button("Log in")
    ui.hand_over_cookie()  # after a logout: the cookie is cleared
    if submitted:
        try:
            user_id = authenticate(ui.db(), email, password, utcnow(), ui.client_address())
        except LoginRefused as exc:
            st.error(md(str(exc)))
        else:
            ui.log_in(user_id, utcnow())
            st.rerun()


# (script beside this file, title, URL path) of each page a logged-in user gets.
PAGES = (("schedules/page.py", "Schedules", "schedules"), ("reports/page.py", "Reports", "reports"),
         ("history/page.py", "History", "history"), ("failures/page.py", "Failures", "failures"),
         ("members/page.py", "Members", "members"), ("tokens/page.py", "API tokens", "tokens"),
         ("health/page.py", "Health", "health"),
         ("account/page.py", "My account", "account"))
# URL paths of the pages only the chosen tenant's admins find in the navigation; others who
# open the URL get a sentence saying why there is nothing for them.
ADMINS_ONLY = {"members", "tokens"}

INBOX = ("inbox/page.py", "Inbox", "inbox")  # `herald demo`: what its mail and Telegram got


def pages() -> list[tuple[str, str, str]]:
    """The pages of this admin: the Inbox too when `herald demo` runs it."""
    return [*PAGES, INBOX] if os.environ.get("HERALD_DEMO_DIR") else list(PAGES)


def stand_ins(page: Callable[[], None]) -> list[st.Page]:
    """`page` at each page's URL, so a bookmarked page shows it (and opens after logging in)."""
    return [st.Page(page, title=title, url_path=path) for _, title, path in pages()]


def no_tenants() -> None:
    st.info("You are not a member of any tenant yet; ask a tenant admin to add you.")


def main() -> None:
    """Log in, or show the sidebar and the pages the viewer may use."""
    st.set_page_config(page_title="herald admin", page_icon="📬", layout="wide")
    with ui.database() as session:
        idle_minutes = get_settings().admin_idle_minutes
        viewer = ui.signed_in(session, utcnow(), idle_minutes)
        if viewer is None:
            st.navigation([st.Page(login, title="Log in", url_path="login", default=True),
                           *stand_ins(login)], position="hidden").run()
            st.stop()

        tenants = visible_tenants(session, viewer)
        with st.sidebar:
            st.text(f"Signed in as {viewer.email}")
            if tenants:
                by_slug = {t.slug: t for t in tenants}
                chosen = ui.choose_tenant(tenants, st.query_params.get("tenant"),
                                          st.session_state.get(ui.TENANT))
                slug = st.selectbox("Tenant", list(by_slug), index=list(by_slug).index(chosen.slug),
                                    format_func=lambda s: by_slug[s].name)
                tenant = by_slug[slug]
                st.session_state[ui.TENANT] = st.query_params["tenant"] = tenant.slug
            if st.button("Log out"):
                ui.log_out(utcnow())
                st.rerun()
            st.caption(f"Idle sessions end after {idle_minutes} minutes.")
            ui.hand_over_cookie()  # after the login: the cookie, for reloads, tabs and links

        ui.set_current(viewer, tenant if tenants else None)
        if tenants:
            manages = viewer.may(tenant.id, Action.MANAGE)
            st.navigation([st.Page(script, title=title, url_path=path, visibility=(
                               "visible" if manages or path not in ADMINS_ONLY else "hidden"))
                           for script, title, path in pages()]).run()
        else:
            # Only their own account: the rest of the pages' URLs say there is nothing yet.
            st.navigation([st.Page(no_tenants, title="No tenants", url_path="no-tenants", default=True),
                           *[p for p in stand_ins(no_tenants) if p.url_path != "account"],
                           st.Page("account/page.py", title="My account", url_path="account")]
                          ).run()


if __name__ == "__main__":
    main()
