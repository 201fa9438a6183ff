"""Whether herald's database and its broker answer now: one probe each, connecting afresh with a
short timeout, returning None or one sentence saying which does not answer and why (the
driver's or the OS's own words, secrets masked). Used by the workers' /health
(`jobs.health`), the broker outage lines (`jobs.outage`), the API's /readyz, and the sends
that ask the broker before committing a run (`jobs.dispatch.check_broker`)."""

from __future__ import annotations

import urllib.parse

import sqlalchemy as sa

from models.redact import redact

PROBE_TIMEOUT_S = 2.0       # libpq counts its connect timeout in whole seconds, 2 at least
DEFAULT_PORTS = {"redis": 6379, "rediss": 6379, "amqp": 5672, "amqps": 5671}


def broker_name(url: str) -> str:
    """"Redis at REDIS_URL (host:port)" or the RabbitMQ one: where, without credentials."""
    parts = urllib.parse.urlsplit(url)
    kind = "RabbitMQ" if parts.scheme.startswith("amqp") else "Redis"
    if parts.scheme == "unix":
        return f"{kind} at REDIS_URL ({parts.path})"
    port = parts.port or DEFAULT_PORTS.get(parts.scheme, "?")
    return f"{kind} at REDIS_URL ({parts.hostname or 'localhost'}:{port})"


def broker_problem(url: str, timeout_s: float = PROBE_TIMEOUT_S) -> str | None:
    """None when the broker at `url` answers within `timeout_s`; else a sentence saying why not."""
    try:
        if url.startswith(("amqp://", "amqps://")):
            _ping_rabbitmq(url, timeout_s)
        else:
            _ping_redis(url, timeout_s)
    except Exception as exc:  # noqa: BLE001 - redis, pika and socket errors alike: the reason is shown
        return f"{broker_name(url)} does not answer ({reason(exc)})."
    return None


def _ping_redis(url: str, timeout_s: float) -> None:
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s)
    try:
        client.ping()
    finally:
        client.close()


def _ping_rabbitmq(url: str, timeout_s: float) -> None:
    import pika

    parameters = pika.URLParameters(url)
    parameters.connection_attempts = 1
    parameters.socket_timeout = parameters.stack_timeout = parameters.blocked_connection_timeout = timeout_s
    pika.BlockingConnection(parameters).close()


_engines: dict[str, sa.Engine] = {}


def database_problem(url: str, timeout_s: float = PROBE_TIMEOUT_S) -> str | None:
    """None when herald's database answers `SELECT 1` within `timeout_s`; else a sentence."""
    if url not in _engines:
        options = {}
        if url.startswith("postgresql"):
            seconds = max(2, round(timeout_s))
            options = {"connect_timeout": seconds, "options": f"-c statement_timeout={seconds * 1000}"}
        _engines[url] = sa.create_engine(url, poolclass=sa.pool.NullPool, connect_args=options)
    try:
        with _engines[url].connect() as connection:
            connection.execute(sa.text("SELECT 1"))
    except sa.exc.SQLAlchemyError as exc:
        return f"The database at DATABASE_URL does not answer ({reason(getattr(exc, 'orig', None) or exc)})."
    return None


def reason(exc: BaseException) -> str:
    """An error's first line, secrets masked: the OS's words when a socket error lies inside
    (pika wraps "Connection refused" in two layers), else the driver's own."""
    found = _os_error(exc)
    if found is not None and found.strerror:
        return found.strerror
    text = str(exc).strip().splitlines()[0].rstrip(".") if str(exc).strip() else type(exc).__name__
    return redact(text)


def _os_error(exc: object, depth: int = 0) -> OSError | None:
    if isinstance(exc, OSError) and exc.strerror:
        return exc
    if isinstance(exc, BaseException) and depth < 4:
        # pika keeps its cause in `.exception`, redis-py in the context it raised from
        for inner in (*exc.args, getattr(exc, "exception", None), exc.__cause__ or exc.__context__):
            found = _os_error(inner, depth + 1)
            if found is not None:
                return found
    return None
