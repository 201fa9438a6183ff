"""The admin's session cookie, set by the server: the route a page posts its login's one-time
code to, answered with the session's token as an HttpOnly cookie (`services.admin_sessions`).

A script in the page could write a cookie too, but not an HttpOnly one, and a Streamlit script
has no HTTP response to set one on; a route of the server has (`admin/server.py` adds it).
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from models.db import session_scope, utcnow
from services import admin_sessions

COOKIE = "herald_session"  # the cookie holding the session's token
PATH = "_herald/session"  # POST a login's code here for the cookie, DELETE to clear it
LONGEST_CODE = 100  # bytes; a login's code has 43 characters


async def session_cookie(request: Request) -> Response:
    """POST a login's one-time code: 204 with the session's cookie, or 403 for a code that is
    unknown, used or late. DELETE: 204, the cookie cleared. Only from the admin's own pages."""
    if request.headers.get("sec-fetch-site", "same-origin") != "same-origin":
        return Response(status_code=403)
    answer = Response(status_code=204)
    # https: served so, or behind a proxy that says so (X-Forwarded-Proto, trusted by uvicorn)
    flags = {"path": "/", "httponly": True, "samesite": "strict",
             "secure": request.url.scheme == "https"}
    if request.method == "DELETE":
        answer.delete_cookie(COOKIE, **flags)
        return answer
    code = await _short_body(request)
    token = await run_in_threadpool(_claim, code) if code else None
    if token is None:
        return Response(status_code=403)
    answer.set_cookie(COOKIE, token, **flags)  # no expiry: it goes when the browser closes
    return answer


async def _short_body(request: Request) -> str | None:
    """The request's body as text, or None past LONGEST_CODE bytes (nothing longer is read)."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > LONGEST_CODE:
            return None
    return body.decode(errors="replace")


def _claim(code: str) -> str | None:
    with session_scope() as session:
        return admin_sessions.claim(session, code, utcnow())


ROUTES = [Route(f"/{PATH}", session_cookie, methods=["POST", "DELETE"])]
