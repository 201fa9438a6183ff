"""herald's error hierarchy: shallow, each class says when it is raised.

Every message is one sentence a person can act on: what is wrong and how to fix it.
"""


class HeraldError(Exception):
    """Base class for errors herald reports to a person."""


class SettingsError(HeraldError):
    """Raised when an environment variable or `.env` entry is invalid."""


class InvalidInput(HeraldError):
    """Raised when a value given to herald (CLI, admin, report file) is refused on write."""


class NotFound(HeraldError):
    """Raised when a tenant, report, schedule or user named by the caller does not exist."""


class Conflict(HeraldError):
    """Raised when a write would duplicate something that must be unique (a slug, an e-mail)."""


class InvalidTransition(HeraldError):
    """Raised when a run or delivery is moved to a state its current state does not allow."""


class QueryError(HeraldError):
    """Raised when a report's SQL fails in the tenant's database (a refused write, a
    timeout, a missing column). Permanent: running it again gives the same answer."""


class RenderError(HeraldError):
    """Raised when a document cannot be rendered (the browser failed or timed out).
    Transient: a retry with a fresh browser may succeed."""


class DataSourceUnreachable(HeraldError):
    """Raised when a tenant's data source cannot be reached or opened. Transient: the
    database may be back when the run is retried."""


class PermissionDenied(HeraldError):
    """Raised when a user's role in a tenant does not allow what they asked for."""


class LoginRefused(HeraldError):
    """Raised when a login is refused (unknown e-mail, wrong password, deactivated or locked
    account); the message is the same for every reason, so it reveals none of them."""


class SessionEnded(HeraldError):
    """Raised when an admin session has ended (logged out, idle, a new password, the account
    deactivated); the message says why and to log in again."""


class BrokerUnavailable(HeraldError):
    """Raised when a run's message could not be handed to the broker (Redis, RabbitMQ).
    Transient: the message says what became of the run."""


def unreachable_service(exc: BaseException) -> str | None:
    """One sentence for an error raised because herald's database or broker could not be used
    (down, refusing, a wrong URL): which one, the reason (`models.reachability.reason`: the
    OS's or the driver's own words, secrets masked), and what to check. None for any other
    error."""
    import sqlalchemy.exc

    from models.reachability import broker_name, reason
    from models.settings import get_settings

    if isinstance(exc, sqlalchemy.exc.DBAPIError) and isinstance(
            exc, (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError)):
        return (f"herald's database could not be used ({reason(exc.orig or exc)}); check that it "
                f"is running and that DATABASE_URL points at it.")
    module = type(exc).__module__.split(".")[0]
    if module in ("redis", "pika", "dramatiq") or isinstance(exc, ConnectionError):
        return (f"{broker_name(get_settings().redis_url or '')} could not be used ({reason(exc)}); "
                f"check that it is running and that REDIS_URL points at it.")
    return None
