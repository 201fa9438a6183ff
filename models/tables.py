"""Every table, imported in one place so `SQLModel.metadata` is complete (Alembic, tests)."""

from models.admin_sessions import AdminSession, LoginFailure
from models.audit import ChangeEvent
from models.health import TickHeartbeat
from models.idempotency import IdempotentRequest
from models.reports import Report
from models.runs import Artifact, ArtifactChunk, Delivery, RenderShare, ReportRun
from models.schedules import Schedule, ScheduleRecipient
from models.tenancy import Membership, Tenant, TenantRecipient, User
from models.tokens import ApiToken
from models.unsubscribe import ScheduleOptOut, SigningKey

__all__ = ["AdminSession", "ApiToken", "Artifact", "ArtifactChunk", "ChangeEvent", "Delivery", "IdempotentRequest", "LoginFailure", "Membership", "RenderShare", "Report", "ReportRun", "Schedule",
           "ScheduleOptOut", "ScheduleRecipient", "SigningKey", "Tenant", "TenantRecipient", "TickHeartbeat", "User"]
