"""`herald token`: the HTTP API's tokens, made, listed and revoked by herald's operator."""

from __future__ import annotations

from typing import Annotated

import typer

from herald.cli.common import JsonOption, print_json, reports_errors
from models.db import session_scope, utcnow
from services import tenants, tokens
from services.access import OPERATOR

token_app = typer.Typer(help="API tokens: a tenant's credentials for the HTTP API.",
                        no_args_is_help=True)


@token_app.command("create")
@reports_errors
def token_create(
    tenant: Annotated[str, typer.Option(help="Tenant slug.")],
    scope: Annotated[list[str], typer.Option(
        help="reports.read, reports.write, schedules.read or schedules.write (repeatable).")],
    name: Annotated[str | None, typer.Option(help="What the token is for, e.g. ci-export.")] = None,
    expires_days: Annotated[int | None, typer.Option(
        help="Days until it expires; default: until revoked.")] = None,
    json_out: JsonOption = False,
) -> None:
    """Make a token for the tenant; it is printed once, and only its hash is kept."""
    with session_scope() as session:
        owner = tenants.get_tenant(session, OPERATOR, tenant)
        made = tokens.create_token(session, OPERATOR, owner.id, scope, name=name,
                                   expires_days=expires_days, now=utcnow())
    if json_out:
        print_json({"id": made.row.id, "token": made.token, "name": made.row.name,
                    "scopes": list(made.row.scopes),
                    "expires_at": made.row.expires_at.isoformat() if made.row.expires_at else None})
        return
    typer.echo(f"token {made.row.id} ({made.row.name}) for {tenant}: {', '.join(made.row.scopes)}"
               + (f"; expires {made.row.expires_at:%Y-%m-%d %H:%M} UTC" if made.row.expires_at else ""))
    typer.echo(f"{made.token}\n(shown once: herald keeps only its hash)")


@token_app.command("list")
@reports_errors
def token_list(
    tenant: Annotated[str | None, typer.Option(help="Tenant slug; default: every tenant's.")] = None,
    json_out: JsonOption = False,
) -> None:
    """List tokens: prefix, name, scopes, expiry, last use, revocation (never the secret)."""
    with session_scope() as session:
        owner = tenants.get_tenant(session, OPERATOR, tenant) if tenant else None
        rows = tokens.list_tokens(session, OPERATOR, owner.id if owner else None)
    iso = lambda v: v.isoformat() if v else None  # noqa: E731
    data = [{"id": r.id, "tenant_id": r.tenant_id, "name": r.name, "prefix": r.prefix,
             "scopes": list(r.scopes), "created_by": r.created_by, "created_at": iso(r.created_at),
             "expires_at": iso(r.expires_at), "last_used_at": iso(r.last_used_at),
             "revoked_at": iso(r.revoked_at)} for r in rows]
    if json_out:
        print_json(data)
        return
    for row in data:
        state = "revoked" if row["revoked_at"] else f"expires {row['expires_at'] or 'never'}"
        typer.echo(f"{row['id']:>5}  {row['prefix']}  {row['name']:<24} {','.join(row['scopes']):<40} "
                   f"{state}; last used {row['last_used_at'] or 'never'}")


@token_app.command("revoke")
@reports_errors
def token_revoke(token_id: int) -> None:
    """Revoke a token: running API processes refuse it within HERALD_API_TOKEN_CACHE_SECONDS."""
    with session_scope() as session:
        row = tokens.revoke_token(session, OPERATOR, token_id, now=utcnow())
    typer.echo(f"token {row.id} ({row.prefix}, {row.name}) revoked")
