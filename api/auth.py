"""Who is calling: `Authorization: Bearer <token>`, an API token or an identity provider's JWT,
made into an `ApiClient` bound to one tenant with its scopes; each endpoint names the scope it
needs (`needs`). 401 without valid credentials, 403 for a missing scope."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel import Session

from api import jwts
from models.db import session_scope, utcnow
from models.tokens import Scope
from services import tokens
from services.access import ApiClient

UNAUTHORIZED = ("Send Authorization: Bearer <token> with a valid API token (`herald token create "
                "--tenant SLUG --scope …`) or your identity provider's JWT.")
_bearer = HTTPBearer(auto_error=False, description="An API token (herald_…) or a JWT.")


def database(request: Request) -> Iterator[Session]:
    """herald's database for one request, committed at its end. A request that writes takes
    SQLite's write lock when it begins (a read that turns into a write midway could fail
    against another writer at once); PostgreSQL locks rows, not the database."""
    with session_scope(locking=request.method not in ("GET", "HEAD")) as session:
        yield session


# The request's session as a dependency: committed when the endpoint returns, before the answer is
# sent (FastAPI's default scope would commit after it: a client could then read the old state).
COMMITTED = Depends(database, scope="function")


def client(request: Request,
           credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> ApiClient:
    """The caller: an unrevoked, unexpired API token, else a JWT the configuration accepts;
    within its rate limit (`api.limits`)."""
    presented = credentials.credentials if credentials is not None else ""
    caller = None
    if presented.startswith(tokens.PREFIX):
        with session_scope(locking=True) as session:  # may write the token's last use
            caller = tokens.authenticate(session, presented, utcnow())
    elif presented:
        caller = jwts.client_of(presented)
    if caller is None:
        raise HTTPException(401, UNAUTHORIZED, headers={"WWW-Authenticate": "Bearer"})
    request.app.state.rate_limit.check(caller)
    return caller


def needs(scope: Scope) -> Callable[..., ApiClient]:
    """A dependency: the caller, if their credentials carry `scope`; else 403."""
    def check(caller: ApiClient = Depends(client)) -> ApiClient:
        if not caller.has(scope.value):
            raise HTTPException(403, f"These credentials lack the {scope.value} scope; use a token "
                                     f"that has it (`herald token create --scope {scope.value}`).")
        return caller

    return check
