"""My account: what the signed-in user sees of their own account (e-mail, tenants and roles,
last login, last password change) and changing their own password (`auth.change_own_password`).

Plain data only; every user may read their own account, and only their own.
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from sqlmodel import Session, select

from admin.access import Viewer
from models.tenancy import Membership, Tenant, User


class Account(NamedTuple):
    email: str
    last_login_at: datetime | None
    password_changed_at: datetime | None     # None: unchanged since the account was made
    tenants: tuple[tuple[str, str], ...]     # (tenant name, role), by name


def my_account(session: Session, viewer: Viewer) -> Account:
    user = session.get(User, viewer.user_id)
    tenants = session.exec(select(Tenant.name, Membership.role)
                           .join(Membership, Membership.tenant_id == Tenant.id)
                           .where(Membership.user_id == viewer.user_id)
                           .order_by(Tenant.name)).all()
    return Account(email=user.email, last_login_at=user.last_login_at,
                   password_changed_at=user.password_changed_at,
                   tenants=tuple((name, str(role)) for name, role in tenants))
