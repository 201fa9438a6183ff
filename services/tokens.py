"""API tokens: made by a tenant's admin (or herald's operator), shown once, kept as a hash,
listed with their scopes, expiry and last use, revoked; and a presented token checked.

A token reads `herald_<prefix>_<secret>`: the prefix (8 hex digits) finds the row and names
the token in lists and in the change audit; the secret (43 URL-safe characters, 256 random
bits) is compared with its SHA-256 in constant time. Creating and revoking are audited.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import datetime, timedelta
from typing import NamedTuple

import sqlalchemy as sa
from sqlmodel import Session, select

from models.audit import record_change
from models.errors import InvalidInput
from models.text import require_one_line
from models.tokens import ApiToken, Scope
from services.access import Action, ApiClient, Operator, Who, owned, require

PREFIX = "herald_"
MAX_EXPIRY_DAYS = 3650
LAST_USED_EVERY = timedelta(minutes=1)  # last use is written at most this often per token
_TOKEN = re.compile(r"^herald_([0-9a-f]{8})_([A-Za-z0-9_-]{20,100})$")
SCOPES = tuple(s.value for s in Scope)


class TokenRow(NamedTuple):
    """A token as lists show it: never its secret."""

    id: int
    tenant_id: int
    name: str
    prefix: str          # e.g. "herald_1a2b3c4d": the start of the token itself
    scopes: tuple[str, ...]
    created_by: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


class NewToken(NamedTuple):
    """A token just made: `token` is shown this once and kept nowhere."""

    row: TokenRow
    token: str


def create_token(session: Session, who: Who, tenant_id: int, scopes: list[str] | tuple[str, ...],
                 *, name: str | None = None, expires_days: int | None = None,
                 now: datetime) -> NewToken:
    """A new token of the tenant with `scopes`, valid for `expires_days` (None: until revoked)."""
    require(who, tenant_id, Action.MANAGE)
    chosen = parse_scopes(scopes)
    if expires_days is not None and not 1 <= expires_days <= MAX_EXPIRY_DAYS:
        raise InvalidInput(f"expires_days is {expires_days}; give 1 to {MAX_EXPIRY_DAYS} days, or "
                           f"none for a token that lasts until it is revoked.")
    prefix = secrets.token_hex(4)
    while session.exec(select(ApiToken.id).where(ApiToken.prefix == prefix)).first() is not None:
        prefix = secrets.token_hex(4)
    name = (name or "").strip() or f"token {prefix}"
    require_one_line(name, "token name")
    if len(name) > 200:
        raise InvalidInput(f"The token name is {len(name)} characters long; shorten it to at most 200.")
    secret = secrets.token_urlsafe(32)
    token = ApiToken(tenant_id=tenant_id, name=name, prefix=prefix, secret_hash=secret_hash(secret),
                     scopes=list(chosen), created_by=who.actor, created_at=now,
                     expires_at=now + timedelta(days=expires_days) if expires_days else None)
    session.add(token)
    session.flush()
    record_change(session, tenant_id, "token", token.id, "created", who.actor, {
        "name": [None, name], "scopes": [None, list(chosen)],
        "expires_at": [None, token.expires_at.isoformat() if token.expires_at else None]})
    return NewToken(_row(token), f"{PREFIX}{prefix}_{secret}")


def parse_scopes(scopes: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    chosen = tuple(dict.fromkeys(s.strip() for s in scopes if s.strip()))
    if not chosen:
        raise InvalidInput(f"A token needs at least one scope; give scope {', '.join(SCOPES[:-1])} "
                           f"or {SCOPES[-1]}.")
    for scope in chosen:
        if scope not in SCOPES:
            raise InvalidInput(f"Unknown scope {scope!r}; use {', '.join(SCOPES[:-1])} or {SCOPES[-1]}.")
    return chosen


def list_tokens(session: Session, who: Who, tenant_id: int | None = None) -> list[TokenRow]:
    """The tenant's tokens (herald's operator: every tenant's when `tenant_id` is None), by id."""
    query = select(ApiToken).order_by(ApiToken.id)
    if tenant_id is not None:
        require(who, tenant_id, Action.MANAGE)
        query = query.where(ApiToken.tenant_id == tenant_id)
    elif not isinstance(who, Operator):
        raise InvalidInput("Name the tenant whose tokens to list.")
    return [_row(t) for t in session.exec(query)]


def revoke_token(session: Session, who: Who, token_id: int, *, now: datetime) -> TokenRow:
    """Revoke a token: it is refused from now on (an API process that checked it in the last
    HERALD_API_TOKEN_CACHE_SECONDS refuses it within those); revoking twice changes nothing."""
    token = owned(session, who, ApiToken, token_id, "token", Action.MANAGE)
    if token.revoked_at is None:
        token.revoked_at, token.revoked_by = now, who.actor
        session.flush()
        record_change(session, token.tenant_id, "token", token.id, "revoked", who.actor,
                      {"revoked": [False, True]})
    return _row(token)


def authenticate(session: Session, presented: str, now: datetime) -> ApiClient | None:
    """The client a presented token stands for; None for a token that is malformed, unknown,
    wrong, revoked or expired (the caller answers them all the same way). One indexed read;
    the last use is written at most once a minute (`LAST_USED_EVERY`). On the API's every
    request: plain statements, no ORM objects."""
    match = _TOKEN.match(presented or "")
    if match is None:
        return None
    prefix, secret = match.groups()
    t = ApiToken.__table__.c
    token = session.execute(sa.select(t.id, t.tenant_id, t.name, t.secret_hash, t.scopes, t.expires_at,
                                      t.last_used_at, t.revoked_at)
                            .where(t.prefix == prefix)).first()
    if token is None or not hmac.compare_digest(token.secret_hash, secret_hash(secret)):
        return None
    if token.revoked_at is not None or (token.expires_at is not None and token.expires_at <= now):
        return None
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_EVERY:
        session.execute(sa.update(ApiToken).where(t.id == token.id).values(last_used_at=now))
    return ApiClient(tenant_id=token.tenant_id, scopes=frozenset(token.scopes),
                     actor=f"token {PREFIX}{prefix} ({token.name})", token_id=token.id,
                     expires_at=token.expires_at)


def secret_hash(secret: str) -> str:
    """How herald keeps a secret it handed out (an API token, an admin session's token or
    code): its SHA-256, never the secret itself."""
    return hashlib.sha256(secret.encode()).hexdigest()


def _row(token: ApiToken) -> TokenRow:
    return TokenRow(id=token.id, tenant_id=token.tenant_id, name=token.name,
                    prefix=f"{PREFIX}{token.prefix}", scopes=tuple(token.scopes),
                    created_by=token.created_by, created_at=token.created_at,
                    expires_at=token.expires_at, last_used_at=token.last_used_at,
                    revoked_at=token.revoked_at)
