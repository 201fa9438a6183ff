"""`/unsubscribe/{token}`: the one-click unsubscribe link every e-mail carries when
HERALD_PUBLIC_URL is set (List-Unsubscribe, RFC 8058). No credentials: the signed token is the
credential. GET shows a page with a button and changes nothing (a link checker or a preview
may follow it); POST, from that button or a mail provider's own, unsubscribes and confirms."""

from __future__ import annotations

import jinja2
from fastapi import APIRouter
from fastapi.responses import HTMLResponse
from sqlmodel import Session

from api.auth import COMMITTED
from models.db import utcnow
from models.errors import NotFound
from services import unsubscribe as service

router = APIRouter(prefix="/unsubscribe", tags=["unsubscribe"])
_PAGES = jinja2.Environment(loader=jinja2.PackageLoader("api", "templates"), autoescape=True)
HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}  # the token stays put


@router.get("/{token}", response_class=HTMLResponse, summary="What the link would do (changes nothing)")
def page(token: str, session: Session = COMMITTED) -> HTMLResponse:
    try:
        subscription = service.look_up(session, token)
    except NotFound as exc:
        return _not_found(exc)
    heading = "Unsubscribe?" if subscription.subscribed else "Already unsubscribed"
    return _page(heading, subscription, confirm=subscription.subscribed)


@router.post("/{token}", response_class=HTMLResponse, summary="Unsubscribe (one click, RFC 8058)")
def confirm(token: str, session: Session = COMMITTED) -> HTMLResponse:
    try:
        subscription = service.unsubscribe(session, token, utcnow())
    except NotFound as exc:
        return _not_found(exc)
    return _page("Unsubscribed", subscription, confirm=False)


def _page(heading: str, subscription: service.Subscription | None, *, confirm: bool,
          detail: str = "", status: int = 200) -> HTMLResponse:
    html = _PAGES.get_template("unsubscribe.html.j2").render(
        heading=heading, subscription=subscription, confirm=confirm, detail=detail)
    return HTMLResponse(html, status_code=status, headers=HEADERS)


def _not_found(exc: NotFound) -> HTMLResponse:
    return _page("Link not valid", None, confirm=False, detail=str(exc), status=404)
