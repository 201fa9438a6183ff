"""The records the members page's data functions return: plain data, no ORM objects."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple


class MemberRow(NamedTuple):
    """One member of the tenant as the members table shows them."""

    user_id: int
    email: str
    role: str                        # viewer, editor or admin (in this tenant)
    account_active: bool             # the user's account as a whole; False: they cannot log in
    last_login_at: datetime | None   # None: never logged in (or not since this was recorded)
    locked_until: datetime | None    # set only while failed logins lock the account
    you: bool                        # the member is the viewer


@dataclass(frozen=True)
class AddedMember:
    """What `add_member` did. A new account comes with a generated password, returned
    only here (kept out of the repr, so it reaches no log) for the admin to hand over."""

    member: MemberRow
    new_account: bool
    temporary_password: str | None = field(default=None, repr=False)


class FallbackRecipient(NamedTuple):
    """A tenant-wide fallback recipient: used by a schedule that names nobody on its channel."""

    id: int
    channel: str
    address: str


class MemberChange(NamedTuple):
    """One recorded change to a member or to the tenant's fallback recipients."""

    id: int
    at: datetime
    actor: str
    action: str
    subject: str                     # the member's e-mail, or "fallback recipients"
    changes: dict[str, list[Any]]    # each field to [old, new]
