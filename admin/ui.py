"""What the admin's pages share: the session-state keys, herald's database for this run, and
the logged-in viewer with the tenant chosen in the sidebar.

A page starts with `here = ui.here(now)` (or `viewer, tenant = ui.current()`) and passes
`here.session` and `here.viewer` to the services. Both exist only while `admin/app.py` runs a
page for a logged-in user.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from datetime import datetime
from typing import NamedTuple, NoReturn

import streamlit as st
from sqlmodel import Session
from streamlit.runtime.scriptrunner import RerunException, StopException

from models.db import session_scope
from models.errors import NotFound
from models.tenancy import Tenant, User
from services.access import Viewer, load_viewer
from services.accounts import ended_by_password_change, session_expired

USER_ID = "herald_user_id"  # the logged-in user's id; absent when anonymous
LAST_SEEN = "herald_last_seen"  # when the user last interacted (aware UTC)
LOGGED_IN_AT = "herald_logged_in_at"  # when this session logged in (a password change ends older ones)
TENANT = "herald_tenant"  # the chosen tenant's slug, kept when the URL loses it
NOTICE = "herald_notice"  # one sentence for the login page (e.g. the session expired)

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
    st.session_state[USER_ID] = user_id
    st.session_state[LAST_SEEN] = st.session_state[LOGGED_IN_AT] = now


def log_out(notice: str | None = None) -> None:
    """Forget the user (the tenant choice stays in the URL); `notice` shows on the login page."""
    for key in (USER_ID, LAST_SEEN, LOGGED_IN_AT):
        st.session_state.pop(key, None)
    if notice:
        st.session_state[NOTICE] = notice


def take_notice() -> str | None:
    return st.session_state.pop(NOTICE, None)


def signed_in(session: Session, now: datetime, idle_minutes: int) -> Viewer | None:
    """The logged-in viewer, with this interaction recorded; None when anonymous, idle for
    `idle_minutes`, deactivated or given a new password since logging in (then logged out
    with a notice)."""
    user_id = st.session_state.get(USER_ID)
    if user_id is None:
        return None
    if session_expired(st.session_state.get(LAST_SEEN), now, idle_minutes):
        log_out(f"Your session ended after {idle_minutes} idle minutes; log in again.")
        return None
    try:
        viewer = load_viewer(session, user_id)
    except NotFound as exc:
        log_out(str(exc))
        return None
    if ended_by_password_change(session.get(User, user_id), st.session_state.get(LOGGED_IN_AT)):
        log_out("This account's password was changed; log in with the new one.")
        return None
    st.session_state[LAST_SEEN] = now
    return viewer


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
        getattr(st, kind)(sentence)


def refused(here: Here, key: str, exc: Exception) -> NoReturn:
    """A refused action: nothing of it is written (the run's session rolls back), and its one
    sentence shows after the rerun."""
    here.session.rollback()
    flash(key, "error", str(exc))
    st.rerun()
