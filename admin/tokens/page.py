"""API tokens: the tenant's credentials for herald's HTTP API: their prefix, name, scopes,
expiry and last use; a new one (shown once, right after it is made); revoking one. For the
tenant's admins only; anyone else gets one sentence.

Layout only: every read and write is `services.tokens` on `ui.db()`, in a savepoint, so a
refusal leaves nothing behind and shows its one sentence.
"""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import streamlit as st

from admin import ui
from admin.format import md, viewer_zone, when
from models.db import utcnow
from models.errors import HeraldError
from models.settings import get_settings
from services import tokens
from services.access import Action
from services.tokens import SCOPES, TokenRow

NOT_ADMIN = "Only the tenant's admins manage its API tokens."
MADE = "tokens_made"            # (name, token) just made: shown once, after the rerun
FLASH = "tokens_flash"
GENERATION = "tokens_generation"


def page() -> None:
    here = ui.here(utcnow())
    st.title("API tokens")
    if not here.viewer.may(here.tenant.id, Action.MANAGE):
        st.info(NOT_ADMIN)
        st.stop()
    ui.show_flash(FLASH)
    made = st.session_state.pop(MADE, None)
    if made:
        st.success(md(f"Token {made[0]!r} made. Copy it now: herald keeps only its hash, and "
                      f"shows it this once."))
        st.code(made[1], language=None)
    rows = tokens.list_tokens(here.session, here.viewer, here.tenant.id)
    table(rows)
    new_token(here)
    revoke(here, [r for r in rows if r.revoked_at is None])


def table(rows: list[TokenRow]) -> None:
    if not rows:
        st.caption("No tokens yet. A token calls /api/v1 as this tenant, with the scopes it has.")
        return
    with st.container(key="tokens_table"):
        st.dataframe(pd.DataFrame(
            [{"Token": f"{r.prefix}_…", "Name": r.name, "Scopes": ", ".join(r.scopes),
              "Made by": r.created_by, "Made": moment(r.created_at),
              "Expires": moment(r.expires_at) or "never", "Last used": moment(r.last_used_at) or "never",
              "State": "revoked" if r.revoked_at else "active"} for r in rows]), hide_index=True)


def new_token(here: ui.Here) -> None:
    fresh = st.session_state.get(GENERATION, 0)
    with st.form(f"token_new_{fresh}"):
        st.markdown("**New token**")
        name = st.text_input("Name", placeholder="what it is for, e.g. ci-export")
        scopes = st.multiselect("Scopes", SCOPES, default=["reports.read"])
        days = st.number_input("Expires after (days; 0: never)", min_value=0, max_value=tokens.MAX_EXPIRY_DAYS,
                               value=90, step=1)
        errors = st.container()
        submitted = st.form_submit_button("Make token")
    if not submitted:
        return
    try:
        with here.session.begin_nested():
            made = tokens.create_token(here.session, here.viewer, here.tenant.id, scopes, name=name,
                                       expires_days=int(days) or None, now=here.now)
    except HeraldError as exc:
        errors.error(md(str(exc)))
        return
    st.session_state[MADE] = (made.row.name, made.token)
    st.session_state[GENERATION] = fresh + 1
    st.rerun()


def revoke(here: ui.Here, active: list[TokenRow]) -> None:
    if not active:
        return
    by_id = {r.id: r for r in active}
    pick_col, button_col = st.columns([4, 1], vertical_alignment="bottom")
    picked = pick_col.selectbox("Revoke a token", list(by_id), index=None, key="token_revoke_pick",
                                placeholder="Pick a token to revoke it",
                                format_func=lambda i: f"{by_id[i].prefix}_… {by_id[i].name}")
    if button_col.button("Revoke", key="token_revoke", disabled=picked is None, width="stretch"):
        try:
            with here.session.begin_nested():
                row = tokens.revoke_token(here.session, here.viewer, picked, now=here.now)
        except HeraldError as exc:
            ui.refused(here, FLASH, exc)
        ui.flash(FLASH, "success", f"Token {row.prefix}_… ({row.name}) revoked: the API refuses it "
                                   f"within {get_settings().api_token_cache_seconds:g} seconds.")
        st.rerun()


def moment(value: datetime | None) -> str | None:
    return when(value.astimezone(viewer_zone(st.context.timezone))) if value else None


if __name__ == "__main__":
    page()
