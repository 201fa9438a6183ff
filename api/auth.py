"""Who is calling: `Authorization: Bearer <token>`, an API token or an identity provider's JWT,
made into an `ApiClient` bound to one tenant with its scopes; each endpoint names the scope it
needs (`needs`). 401 without valid credentials, 403 for a missing scope.

The check costs a client's request no thread and, most of the time, no database read: tokens
checked lately are kept a moment (`TokenCache`), and the rate limit is one Redis script."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable

from fastapi import Depends, HTTPException, Request
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from api import jwts
from models.db import autocommit_session, new_session, utcnow
from models.tokens import Scope
from services import tokens
from services.access import ApiClient

UNAUTHORIZED = ("Send Authorization: Bearer <token> with a valid API token (`herald token create "
                "--tenant SLUG --scope …`) or your identity provider's JWT.")
# The scheme as the OpenAPI schema and the docs' "Authorize" button show it (`api.app`).
BEARER = {"type": "http", "scheme": "bearer", "description": "An API token (herald_…) or a JWT."}


async def database(request: Request) -> AsyncIterator[Session]:
    """herald's database for one request, committed at its end.

    A read (GET, HEAD) on PostgreSQL runs each statement on its own (autocommit): no BEGIN and
    COMMIT round trips, and nothing to do at its end. A request that writes takes SQLite's
    write lock when it begins (a read that turns into a write midway could fail against
    another writer at once); PostgreSQL locks rows, not the database. Making the session costs
    no I/O, so it is made here, on the event loop; its end, which may talk to the database,
    runs on a thread."""
    reading = request.method in ("GET", "HEAD")
    session = new_session(locking=not reading, autocommit=reading)
    quiet = reading and session.bind.dialect.name == "postgresql"   # nothing left to send
    try:
        yield session
        if not quiet:
            await run_in_threadpool(session.commit)
    except BaseException:
        await run_in_threadpool(session.rollback)
        raise
    finally:
        if quiet:
            session.close()
        else:
            await run_in_threadpool(session.close)


# The request's session as a dependency: committed when the endpoint returns, before the answer is
# sent (FastAPI's default scope would commit after it: a client could then read the old state).
COMMITTED = Depends(database, scope="function")


class TokenCache:
    """The API tokens this process checked lately, so that a client's every request does not
    read the database: for `seconds` (HERALD_API_TOKEN_CACHE_SECONDS), a token is trusted as
    it was read. Its secret and its expiry are checked at every request all the same; a token
    revoked meanwhile is refused once its entry is older than `seconds`."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._entries: dict[str, tuple[float, ApiClient]] = {}

    async def client_of(self, presented: str) -> ApiClient | None:
        key = tokens.secret_hash(presented)
        entry = self._entries.get(key)
        now = time.monotonic()
        if entry is None or now - entry[0] > self.seconds:
            found = await run_in_threadpool(_authenticate, presented)
            if found is None:
                self._entries.pop(key, None)
                return None
            if len(self._entries) > 10_000:
                self._entries.clear()
            entry = self._entries[key] = (now, found)
        caller = entry[1]
        if caller.expires_at is not None and caller.expires_at <= utcnow():
            return None
        return caller


def _authenticate(presented: str) -> ApiClient | None:
    with autocommit_session() as session:  # may write the token's last use
        return tokens.authenticate(session, presented, utcnow())


async def client(request: Request) -> ApiClient:
    """The caller: an unrevoked, unexpired API token, else a JWT the configuration accepts;
    within its rate limit (`api.limits`). The header is read here rather than by a FastAPI
    security dependency, which would double the cost of solving this one on every request
    (the schema names the scheme all the same: `BEARER`)."""
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    presented = presented.strip() if scheme.lower() == "bearer" else ""
    caller = None
    if presented.startswith(tokens.PREFIX):
        caller = await request.app.state.tokens.client_of(presented)
    elif presented:
        caller = await run_in_threadpool(jwts.client_of, presented)
    if caller is None:
        raise HTTPException(401, UNAUTHORIZED, headers={"WWW-Authenticate": "Bearer"})
    await request.app.state.rate_limit.check(caller)
    return caller


def needs(scope: Scope) -> Callable[..., Awaitable[ApiClient]]:
    """A dependency: the caller, if their credentials carry `scope`; else 403."""
    async def check(caller: ApiClient = Depends(client)) -> ApiClient:
        if not caller.has(scope.value):
            raise HTTPException(403, f"These credentials lack the {scope.value} scope; use a token "
                                     f"that has it (`herald token create --scope {scope.value}`).")
        return caller

    return check
