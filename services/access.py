"""Who is asking: an admin user with their roles (`Viewer`), the operator at herald's own
command line (`OPERATOR`), or an HTTP API client bound to one tenant (`ApiClient`); which
tenants they see, and what they may do there.

Every service operation takes who is asking and checks here first (`require`, `owned`), so
scoping is enforced where the data is read and written, not by hiding buttons. Another
tenant's objects read as "not found", never as "forbidden": their ids reveal nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TypeVar

from sqlmodel import Session, SQLModel, select

from models.audit import CLI
from models.errors import NotFound, PermissionDenied
from models.tenancy import Membership, Role, Tenant, User

T = TypeVar("T", bound=SQLModel)


class Action(StrEnum):
    """What a data function does: read; change schedules and reports (and send); manage the
    tenant's recipients and members."""

    READ = "read"
    EDIT = "edit"
    MANAGE = "manage"


ALLOWED: dict[Role, frozenset[Action]] = {
    Role.VIEWER: frozenset({Action.READ}),
    Role.EDITOR: frozenset({Action.READ, Action.EDIT}),
    Role.ADMIN: frozenset({Action.READ, Action.EDIT, Action.MANAGE}),
}
NEEDS = {Action.READ: "viewer", Action.EDIT: "editor or admin", Action.MANAGE: "admin"}


@dataclass(frozen=True)
class Viewer:
    """The logged-in user and their role in each of their tenants."""

    user_id: int
    email: str
    roles: Mapping[int, Role]

    @property
    def actor(self) -> str:
        """Who the change audit and a run's `requested_by` name: the user's e-mail."""
        return self.email

    def role_in(self, tenant_id: int) -> Role | None:
        return self.roles.get(tenant_id)

    def may(self, tenant_id: int, action: Action) -> bool:
        """Whether their role in the tenant allows `action` (for showing buttons; the services
        check with `require` whatever the page shows)."""
        role = self.role_in(tenant_id)
        return role is not None and action in ALLOWED[role]


@dataclass(frozen=True)
class Operator:
    """Whoever runs the `herald` command on herald's own machine: they hold DATABASE_URL, so
    they may do anything in every tenant. Their changes are audited as "cli"."""

    actor: str = CLI

    def role_in(self, tenant_id: int) -> Role:
        return Role.ADMIN

    def may(self, tenant_id: int, action: Action) -> bool:
        return True


OPERATOR = Operator()


@dataclass(frozen=True)
class ApiClient:
    """A caller of the HTTP API: an API token or an identity provider's JWT, bound to one tenant
    with its scopes. Its role there follows them: any `*.write` scope edits, else it reads
    (the API checks the scope each endpoint needs on top). Audited as `actor`: the token
    ("token herald_1a2b3c4d (ci-export)") or the JWT's subject."""

    tenant_id: int
    scopes: frozenset[str]
    actor: str
    token_id: int | None = None
    expires_at: datetime | None = None   # when the token expires (None: until revoked)

    def role_in(self, tenant_id: int) -> Role | None:
        if tenant_id != self.tenant_id:
            return None
        return Role.EDITOR if any(s.endswith(".write") for s in self.scopes) else Role.VIEWER

    def may(self, tenant_id: int, action: Action) -> bool:
        role = self.role_in(tenant_id)
        return role is not None and action in ALLOWED[role]

    def has(self, scope: str) -> bool:
        return scope in self.scopes


Who = Viewer | Operator | ApiClient


def load_viewer(session: Session, user_id: int) -> Viewer:
    """The user with their memberships; an unknown or deactivated user is not found."""
    user = session.get(User, user_id)
    if user is None or not user.active:
        raise NotFound("This account no longer exists or was deactivated; log in again.")
    memberships = session.exec(select(Membership).where(Membership.user_id == user_id)).all()
    return Viewer(user_id=user.id, email=user.email,
                  roles={m.tenant_id: Role(m.role) for m in memberships})


def visible_tenants(session: Session, viewer: Viewer) -> list[Tenant]:
    """The viewer's tenants, by name."""
    if not viewer.roles:
        return []
    return list(session.exec(select(Tenant).where(Tenant.id.in_(list(viewer.roles)))
                             .order_by(Tenant.name)))


def require(who: Who, tenant_id: int, action: Action = Action.READ) -> Role:
    """Their role in the tenant, if it allows `action`; else NotFound or PermissionDenied."""
    role = who.role_in(tenant_id)
    if role is None:
        raise NotFound("No such tenant among yours.")
    if action not in ALLOWED[role]:
        raise PermissionDenied(f"Your role in this tenant is {role}; to {action} you need to be "
                               f"{NEEDS[action]}. Ask a tenant admin.")
    return role


def owned(session: Session, who: Who, model: type[T], object_id: int, noun: str,
          action: Action = Action.READ) -> T:
    """The row `object_id` of `model` if it belongs to one of their tenants and their role
    allows `action` there. Another tenant's row reads exactly like a missing one."""
    row = session.get(model, object_id)
    if row is None or getattr(row, "deleted_at", None) is not None or who.role_in(row.tenant_id) is None:
        raise NotFound(f"No {noun} {object_id}.")
    require(who, row.tenant_id, action)
    return row
