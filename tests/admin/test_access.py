"""Scoping and roles, enforced where the data is: another tenant's ids read as not found,
and each role may do what it may."""

from __future__ import annotations

import pytest
from sqlmodel import Session, select

from models.errors import NotFound, PermissionDenied
from models.schedules import Schedule
from models.tenancy import Membership, Role, Tenant, User
from services.access import Action, load_viewer, owned, require, visible_tenants


@pytest.fixture
def two_tenants(session: Session) -> dict[str, int]:
    acme, beta = Tenant(slug="acme", name="Acme"), Tenant(slug="beta", name="Beta")
    ana = User(email="ana@acme.example", password_hash="x")
    session.add_all([acme, beta, ana])
    session.flush()
    session.add(Membership(user_id=ana.id, tenant_id=acme.id, role=Role.EDITOR))
    session.commit()
    return {"acme": acme.id, "beta": beta.id, "ana": ana.id}


@pytest.mark.parametrize(("role", "allowed"), [
    (Role.VIEWER, {Action.READ}),
    (Role.EDITOR, {Action.READ, Action.EDIT}),
    (Role.ADMIN, {Action.READ, Action.EDIT, Action.MANAGE}),
])
def test_each_role_may_do_what_it_may(session: Session, two_tenants, role: Role, allowed) -> None:
    membership = session.exec(select(Membership)).one()
    membership.role = role
    session.commit()
    viewer = load_viewer(session, two_tenants["ana"])
    for action in Action:
        if action in allowed:
            assert require(viewer, two_tenants["acme"], action) == role
        else:
            with pytest.raises(PermissionDenied, match=f"Your role in this tenant is {role}"):
                require(viewer, two_tenants["acme"], action)


def test_another_tenants_objects_read_as_not_found(session: Session, two_tenants) -> None:
    viewer = load_viewer(session, two_tenants["ana"])
    assert [t.slug for t in visible_tenants(session, viewer)] == ["acme"]
    with pytest.raises(NotFound, match="No such tenant among yours"):
        require(viewer, two_tenants["beta"])
    theirs = owned_row(session, two_tenants["beta"])
    with pytest.raises(NotFound, match=f"^No schedule {theirs}.$"):
        owned(session, viewer, Schedule, theirs, "schedule")
    with pytest.raises(NotFound, match="^No schedule 999999.$"):
        owned(session, viewer, Schedule, 999999, "schedule")
    mine = owned_row(session, two_tenants["acme"])
    assert owned(session, viewer, Schedule, mine, "schedule", Action.EDIT).id == mine


def owned_row(session: Session, tenant_id: int) -> int:
    from models.reports import Report

    report = Report(tenant_id=tenant_id, slug=f"r{tenant_id}", title="R", definition={})
    session.add(report)
    session.flush()
    schedule = Schedule(tenant_id=tenant_id, report_id=report.id, cron="0 9 * * *", timezone="UTC")
    session.add(schedule)
    session.commit()
    return schedule.id
