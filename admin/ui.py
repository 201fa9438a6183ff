"""What the admin's pages share: the session-state keys, herald's database for this run, the
signed-in viewer (kept across reloads and tabs by the session cookie, `services.admin_sessions`,
and checked again by each download and each self-refreshing part of a page when it is used)
and the tenant chosen in the sidebar.

A page starts with `here = ui.here(now)` (or `viewer, tenant = ui.current()`) and passes
`here.session` and `here.viewer` to the services. Both exist only while `admin/app.py` runs a
page for a logged-in user.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from datetime import datetime
from typing import NamedTuple, NoReturn

import streamlit as st
from sqlmodel import Session
from streamlit.runtime.scriptrunner import RerunException, StopException

from admin import session_cookie
from admin.format import md
from models.admin_sessions import Ended
from models.db import session_scope, utcnow
from models.errors import SessionEnded
from models.settings import get_settings
from models.tenancy import Tenant
from services import admin_sessions
from services.access import Viewer

SESSION_ID = "herald_session_id"  # the id of this tab's admin session; absent when anonymous
HANDOFF = "herald_handoff"  # the login's one-time code, until the page hands it to the server
FORGET = "herald_forget_cookie"  # set by logging out: the login page clears the cookie
TENANT = "herald_tenant"  # the chosen tenant's slug, kept when the URL loses it
NOTICE = "herald_notice"  # one sentence for the login page (e.g. the session expired)

log = logging.getLogger("herald.admin")

_db: ContextVar[Session] = ContextVar("herald_admin_db")
_current: ContextVar[tuple[Viewer, Tenant | None] | None] = ContextVar("herald_admin_current",
                                                                     default=None)


@contextlib.contextmanager
def database() -> Iterator[Session]:
    """herald's database for one run of the app, committed at its end; `st.rerun()` and
    `st.stop()` end a run normally, so they commit too (an error rolls back)."""
    control: BaseException | None = None
    with session_scope() as session:
        tokens = _db.set(session), _current.set(None)  # nothing leaks from an earlier run
        try:
            yield session
        except (RerunException, StopException) as exc:
            control = exc
        finally:
            _db.reset(tokens[0])
            _current.reset(tokens[1])
    if control is not None:
        raise control


def db() -> Session:
    """The database session of the current run."""
    return _db.get()


def log_in(user_id: int, now: datetime) -> None:
    """Start an admin session for the user who just logged in, in this tab; the next run hands
    its code to the server for the cookie (`hand_over_cookie`)."""
    started, code = admin_sessions.start(db(), user_id, now)
    st.session_state[SESSION_ID], st.session_state[HANDOFF] = started, code


def log_out(now: datetime) -> None:
    """End this tab's session on the server, so the user's other tabs ask for a login too; the
    login page then clears the cookie. The tenant choice stays in the URL."""
    if SESSION_ID in st.session_state:
        admin_sessions.end(db(), st.session_state[SESSION_ID], now, Ended.LOGOUT)
    forget()
    st.session_state[FORGET] = True


def forget(notice: str | None = None) -> None:
    """Forget this tab's session; `notice` shows on the login page."""
    for key in (SESSION_ID, HANDOFF):
        st.session_state.pop(key, None)
    if notice:
        st.session_state[NOTICE] = notice


def take_notice() -> str | None:
    return st.session_state.pop(NOTICE, None)


def session_id() -> int | None:
    """The id of this tab's admin session; None when anonymous."""
    return st.session_state.get(SESSION_ID)


def signed_in(session: Session, now: datetime, idle_minutes: int) -> Viewer | None:
    """The signed-in viewer, with this interaction recorded: this tab's session, or the one the
    cookie names (a reload, another tab, a link). None when anonymous, or when the session has
    ended: logged out in another tab, idle for `idle_minutes`, a new password, the account
    deactivated (then with a notice for the login page)."""
    if SESSION_ID not in st.session_state:
        # The cookie as the browser sent it when this tab connected: after a logout here it
        # names an ended session, which `resume` refuses.
        token = st.context.cookies.get(session_cookie.COOKIE)  # not a string under AppTest
        resumed = admin_sessions.resume(session, token if isinstance(token, str) else None)
        if resumed is None:
            return None
        st.session_state[SESSION_ID] = resumed
    try:
        return admin_sessions.check(session, st.session_state[SESSION_ID], now, idle_minutes)
    except SessionEnded as exc:
        forget(str(exc))
        return None


def client_address() -> str | None:
    """The IP address this browser's connection comes from, as the admin's server sees it:
    behind a proxy that uvicorn trusts (FORWARDED_ALLOW_IPS: 127.0.0.1 unless set) the one
    its X-Forwarded-For names, never a header from anyone else; None from the admin's own host."""
    address = st.context.ip_address
    return address if isinstance(address, str) else None  # not a string under AppTest


def checked_viewer(session_id: int | None, tenant_id: int, seen: bool = True) -> Viewer:
    """The viewer of admin session `session_id`, checked now as a page's run is (logged in, not
    idle, not deactivated) and still a member of `tenant_id`, on a database session of its own
    (this works outside a run too); raises SessionEnded, with the session ended, otherwise."""
    if session_id is None:
        raise SessionEnded("You are not logged in; log in again.")
    with session_scope() as own:
        return admin_sessions.check(own, session_id, utcnow(), get_settings().admin_idle_minutes,
                                    tenant_id, seen=seen)


def recheck(tenant_id: int, seen: bool = True) -> Viewer | None:
    """In a run `admin/app.py` did not check (a fragment's own rerun, a button's callback):
    the viewer, still signed in and a member of `tenant_id`; else None, with this tab's
    session forgotten, so the app's next run shows the login page saying why."""
    try:
        return checked_viewer(session_id(), tenant_id, seen)
    except SessionEnded as exc:
        log.warning("admin session %s refused on a recheck: %s", session_id(), exc)
        forget(str(exc))
        return None


def download_button(label: str, produce: Callable[[Session, Viewer], bytes], tenant_id: int,
                    **options) -> None:
    """A download whose bytes are made by `produce(session, viewer)` only when it is clicked,
    after this tab's session is checked again (`checked_viewer`: a membership removed, a new
    password or the idle limit since the page was drawn refuse it and end the session). The
    click also reruns the app after the same check, so a refused download shows the login page.

    Streamlit runs the data callable on a thread of its own, without the page's state (st
    commands do nothing there), so it gets the session id, not the session state."""
    st.download_button(label, data=functools.partial(_checked_download, session_id(), tenant_id,
                                                     produce),
                       on_click=recheck, args=(tenant_id,), **options)


def _checked_download(session_id: int | None, tenant_id: int,
                      produce: Callable[[Session, Viewer], bytes]) -> bytes:
    try:
        # Only a read when the session holds: the click's own run of the app records the
        # activity, and holds the session's row while it runs, which a write here would wait for.
        viewer = checked_viewer(session_id, tenant_id, seen=False)
    except SessionEnded as exc:
        log.warning("download refused for admin session %s: %s", session_id, exc)
        raise
    with session_scope() as own:
        return produce(own, viewer)


def hand_over_cookie() -> None:
    """After a login: the page posts the login's one-time code to the server, which answers with
    the session cookie, HttpOnly (the token never reaches the page). After a logout: it asks the
    server to clear the cookie. Runs once, as a hidden script."""
    code, clear = st.session_state.pop(HANDOFF, None), st.session_state.pop(FORGET, False)
    if code is None and not clear:
        return
    # A relative URL: the route is beside the pages, also behind a proxy that adds a prefix.
    request = ({"method": "POST", "body": code} if code else {"method": "DELETE"})
    st.html(f"<script>fetch({json.dumps(session_cookie.PATH)}, "
            f"{json.dumps({**request, 'credentials': 'same-origin'})});</script>",
            unsafe_allow_javascript=True)


def choose_tenant(tenants: Sequence[Tenant], *wanted: str | None) -> Tenant:
    """The first of the `wanted` slugs that is one of `tenants`, else the first tenant; a
    slug that is not the viewer's is ignored."""
    by_slug = {t.slug: t for t in tenants}
    return next((by_slug[s] for s in wanted if s in by_slug), tenants[0])


def set_current(viewer: Viewer, tenant: Tenant | None) -> None:
    """The logged-in viewer and the tenant chosen in the sidebar (None: they have none)."""
    _current.set((viewer, tenant))


def current() -> tuple[Viewer, Tenant]:
    """The logged-in viewer and the chosen tenant; outside a logged-in run, or without a
    tenant, the page stops."""
    chosen = _current.get()
    if chosen is None or chosen[1] is None:
        st.stop()
    return chosen


def current_viewer() -> Viewer:
    """The logged-in viewer, with or without tenants; outside a logged-in run the page stops."""
    chosen = _current.get()
    if chosen is None:
        st.stop()
    return chosen[0]


class Here(NamedTuple):
    """What a page works with on this run: who is logged in, their chosen tenant, the run's
    database session, and the page's clock."""

    viewer: Viewer
    tenant: Tenant
    session: Session
    now: datetime


def here(now: datetime) -> Here:
    """The logged-in viewer, the chosen tenant and this run's session, at `now`; outside a
    logged-in run, or without a tenant, the page stops."""
    viewer, tenant = current()
    return Here(viewer, tenant, db(), now)


def pick(name: str, object_id: int | None) -> None:
    """Keep the picked object's id in the URL (`?name=N`, so it can be linked), or take it out."""
    if object_id is None:
        st.query_params.pop(name, None)
    else:
        st.query_params[name] = str(object_id)


def picked_in_grid(name: str, grid_key: str, ids_key: str) -> None:
    """A grid's on-select: pick the id of the row clicked in grid `grid_key`, whose rows are the
    ids kept under `ids_key` in the session state."""
    rows = st.session_state[grid_key]["selection"]["rows"]
    ids = st.session_state.get(ids_key, [])
    pick(name, ids[rows[0]] if rows and rows[0] < len(ids) else None)


def flash(key: str, kind: str, sentence: str) -> None:
    """Show `sentence` (as `st.success`, `st.info`, `st.error`…: `kind`) on the next run, after
    the rerun that follows an action; `show_flash(key)` shows it."""
    st.session_state[key] = (kind, sentence)


def show_flash(key: str) -> None:
    if key in st.session_state:
        kind, sentence = st.session_state.pop(key)
        getattr(st, kind)(md(sentence))  # it may hold a title, an address, a server's reply


def refused(here: Here, key: str, exc: Exception) -> NoReturn:
    """A refused action: nothing of it is written (the run's session rolls back), and its one
    sentence shows after the rerun."""
    here.session.rollback()
    flash(key, "error", str(exc))
    st.rerun()
