"""herald's one settings object, read from the environment and a `.env` file.

Names from the systems herald replaces (`MAIL_*`, `RENDER_PDF_STUB`, ...) keep
their meaning; herald's own settings carry the `HERALD_` prefix.
"""

from __future__ import annotations

import functools
import os
import ssl
import urllib.parse
from typing import Annotated, Literal

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from models.errors import SettingsError

URL_SPELLING = "percent-encode an @ in the user name or password as %40 and a space as %20"


def read_database_url(url: str) -> URL:
    """A database URL as SQLAlchemy reads it (each %xx decoded once), for DATABASE_URL and the
    tenants' data sources alike. ValueError, never quoting the URL, for one it cannot read or
    would read wrongly: after a raw @ in a password, the rest of the password becomes the host."""
    try:
        parsed = make_url(url.strip())
    except (ArgumentError, ValueError, AttributeError):
        raise ValueError(f"cannot be read as a URL; give the port as a number and "
                         f"{URL_SPELLING}") from None
    if "@" in (parsed.host or ""):
        raise ValueError(f"has an @ that is not the one before its host; {URL_SPELLING}")
    return parsed


def _env(name: str) -> AliasChoices:
    return AliasChoices(name, name.lower())


class Settings(BaseSettings):
    """Everything herald reads from its environment."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", populate_by_name=True
    )

    database_url: str = Field("sqlite:///herald.db", validation_alias=_env("DATABASE_URL"))
    redis_url: str | None = Field(None, validation_alias=_env("REDIS_URL"))

    mail_from: str | None = Field(None, validation_alias=_env("MAIL_FROM"))
    mail_smtp_host: str | None = Field(None, validation_alias=_env("MAIL_SMTP_HOST"))
    mail_smtp_port: int = Field(587, ge=1, le=65535, validation_alias=_env("MAIL_SMTP_PORT"))
    mail_smtp_user: str | None = Field(None, validation_alias=_env("MAIL_SMTP_USER"))
    mail_smtp_pass: SecretStr | None = Field(None, validation_alias=_env("MAIL_SMTP_PASS"))
    mail_smtp_secure: bool = Field(False, validation_alias=_env("MAIL_SMTP_SECURE"))
    # A PEM bundle of CA certificates trusted for the SMTP server instead of the system's.
    mail_smtp_ca_file: str | None = Field(None, validation_alias=_env("MAIL_SMTP_CA_FILE"))
    # Log in over an unencrypted connection (a trusted local relay only).
    mail_smtp_allow_plaintext_login: bool = Field(
        False, validation_alias=_env("MAIL_SMTP_ALLOW_PLAINTEXT_LOGIN"))

    telegram_bot_token: SecretStr | None = Field(None, validation_alias=_env("TELEGRAM_BOT_TOKEN"))
    telegram_api_url: str | None = Field(None, validation_alias=_env("TELEGRAM_API_URL"))

    render_pdf_stub: bool = Field(False, validation_alias=_env("RENDER_PDF_STUB"))
    # Runs due in the same minute that make the same documents share one render (pipeline.sharing).
    share_renders: bool = Field(True, validation_alias=_env("HERALD_SHARE_RENDERS"))

    shards: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["default"], validation_alias=_env("HERALD_SHARDS")
    )
    redis_namespace: str = Field("herald", validation_alias=_env("HERALD_REDIS_NAMESPACE"))
    misfire_grace_seconds: int = Field(
        3600, ge=60, validation_alias=_env("HERALD_MISFIRE_GRACE_SECONDS")
    )
    max_recipients: int = Field(20, ge=1, le=1000, validation_alias=_env("HERALD_MAX_RECIPIENTS"))
    query_timeout_seconds: float = Field(
        60.0, gt=0, validation_alias=_env("HERALD_QUERY_TIMEOUT_SECONDS")
    )
    # A report's `refresh:` (REFRESH MATERIALIZED VIEW …) may take longer than a query.
    refresh_timeout_seconds: float = Field(
        600.0, gt=0, validation_alias=_env("HERALD_REFRESH_TIMEOUT_SECONDS")
    )
    lease_seconds: int = Field(60, ge=5, le=3600, validation_alias=_env("HERALD_LEASE_SECONDS"))
    requeue_after_seconds: int = Field(
        60, ge=5, le=3600, validation_alias=_env("HERALD_REQUEUE_AFTER_SECONDS")
    )
    max_run_attempts: int = Field(3, ge=1, le=20, validation_alias=_env("HERALD_MAX_RUN_ATTEMPTS"))
    pdf_table_max_rows: int = Field(
        1000, ge=1, le=100_000, validation_alias=_env("HERALD_PDF_TABLE_MAX_ROWS")
    )
    tick_batch_size: int = Field(5000, ge=1, le=100_000, validation_alias=_env("HERALD_TICK_BATCH_SIZE"))
    render_timeout_seconds: float = Field(
        60.0, gt=0, validation_alias=_env("HERALD_RENDER_TIMEOUT_SECONDS")
    )
    csv_compress_above_bytes: int = Field(
        10 * 1024 * 1024, ge=0, validation_alias=_env("HERALD_CSV_COMPRESS_ABOVE_BYTES")
    )
    # A CSV that grows past this fails with the size and the limit, instead of filling the disk.
    csv_max_bytes: int = Field(
        256 * 1024 * 1024, ge=1024, validation_alias=_env("HERALD_CSV_MAX_BYTES")
    )
    csv_neutralise_formulas: bool = Field(True, validation_alias=_env("HERALD_CSV_NEUTRALISE_FORMULAS"))
    chromium_path: str | None = Field(None, validation_alias=_env("HERALD_CHROMIUM_PATH"))
    # "tenant": one tenant's consecutive renders share a browser context; "render": a fresh one each.
    render_isolation: Literal["tenant", "render"] = Field(
        "tenant", validation_alias=_env("HERALD_RENDER_ISOLATION"))
    artifact_retention_days: int = Field(
        30, ge=1, validation_alias=_env("HERALD_ARTIFACT_RETENTION_DAYS")
    )

    mail_max_bytes: int = Field(
        25 * 1024 * 1024, ge=1024, validation_alias=_env("HERALD_MAIL_MAX_BYTES")
    )  # the whole message as sent, attachments base64-encoded
    telegram_max_bytes: int = Field(
        50 * 1024 * 1024, ge=1024, validation_alias=_env("HERALD_TELEGRAM_MAX_BYTES")
    )  # per document; the Bot API's own limit
    send_timeout_seconds: float = Field(
        30.0, gt=0, validation_alias=_env("HERALD_SEND_TIMEOUT_SECONDS")
    )
    delivery_max_attempts: int = Field(
        5, ge=1, le=20, validation_alias=_env("HERALD_DELIVERY_MAX_ATTEMPTS")
    )
    delivery_backoff_seconds: float = Field(
        2.0, gt=0, validation_alias=_env("HERALD_DELIVERY_BACKOFF_SECONDS")
    )
    delivery_backoff_max_seconds: float = Field(
        60.0, gt=0, validation_alias=_env("HERALD_DELIVERY_BACKOFF_MAX_SECONDS")
    )
    # A schedule whose last N scheduled or manual runs all FAILED is paused and its tenant's
    # admins are e-mailed (0: never). 3, because one failure is a blip and two can be one outage
    # across two slots, while a third in a row is a broken report or data source that would
    # otherwise fail at every slot until somebody looks.
    autopause_after: int = Field(3, ge=0, le=1000, validation_alias=_env("HERALD_AUTOPAUSE_AFTER"))
    # `herald health` and the admin's Health page: a tick older than this is a problem (periodiq
    # ticks every minute; a few lost triggers are normal), and so is a channel failing this share
    # of its deliveries over 24 hours.
    health_tick_late_seconds: int = Field(
        300, ge=60, validation_alias=_env("HERALD_HEALTH_TICK_LATE_SECONDS"))
    health_failure_rate: float = Field(
        0.2, gt=0, le=1, validation_alias=_env("HERALD_HEALTH_FAILURE_RATE"))
    # An admin session with no interaction for this long is logged out.
    admin_idle_minutes: int = Field(
        30, ge=1, le=24 * 60, validation_alias=_env("HERALD_ADMIN_IDLE_MINUTES")
    )
    # Where a `dramatiq jobs` worker serves /metrics and /health: this host only, unless told
    # otherwise (0.0.0.0 in a container Prometheus scrapes). Each worker on one host needs its
    # own port. dramatiq's own names (dramatiq_prom_host, dramatiq_prom_port) are read too.
    metrics_host: str = Field("127.0.0.1", validation_alias=AliasChoices(
        "HERALD_METRICS_HOST", "herald_metrics_host", "dramatiq_prom_host"))
    metrics_port: int = Field(9191, ge=1, le=65535, validation_alias=AliasChoices(
        "HERALD_METRICS_PORT", "herald_metrics_port", "dramatiq_prom_port"))
    # Log lines as text for people, or one JSON object per line for a log collector.
    log_format: Literal["text", "json"] = Field("text", validation_alias=_env("HERALD_LOG_FORMAT"))
    # The level of herald's own loggers ("herald.*"); libraries keep theirs.
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL",
                       "debug", "info", "warning", "error", "critical"] = Field(
        "INFO", validation_alias=_env("HERALD_LOG_LEVEL"))

    # The HTTP API (`herald api`): its largest request body, the exports it runs at once, the
    # requests a minute of each credential (0: no limit), and the identity provider whose JWTs
    # it accepts (none unless a key is configured).
    api_max_body_bytes: int = Field(
        1024 * 1024, ge=1024, validation_alias=_env("HERALD_API_MAX_BODY_BYTES"))
    api_max_exports: int = Field(4, ge=1, le=256, validation_alias=_env("HERALD_API_MAX_EXPORTS"))
    api_rate_limit: int = Field(600, ge=0, le=60000, validation_alias=_env("HERALD_API_RATE_LIMIT"))
    # How long an API process trusts a token it has checked: a revoked token is refused within it.
    api_token_cache_seconds: float = Field(
        2.0, ge=0, le=60, validation_alias=_env("HERALD_API_TOKEN_CACHE_SECONDS"))
    jwt_jwks_url: str | None = Field(None, validation_alias=_env("HERALD_JWT_JWKS_URL"))
    jwt_public_key: str | None = Field(None, validation_alias=_env("HERALD_JWT_PUBLIC_KEY"))
    jwt_secret: SecretStr | None = Field(None, validation_alias=_env("HERALD_JWT_SECRET"))
    jwt_issuer: str | None = Field(None, validation_alias=_env("HERALD_JWT_ISSUER"))
    jwt_audience: str | None = Field(None, validation_alias=_env("HERALD_JWT_AUDIENCE"))
    jwt_tenant_claim: str = Field("tenant", validation_alias=_env("HERALD_JWT_TENANT_CLAIM"))
    # Where people reach `herald api` (e.g. https://reports.example.com): every e-mail then
    # carries a one-click unsubscribe link there. Unset: no link.
    public_url: str | None = Field(None, validation_alias=_env("HERALD_PUBLIC_URL"))
    # Where people reach `herald admin` (e.g. https://reports.example.com/admin): the e-mails
    # telling tenant admins that herald paused a schedule then link to its failed run.
    admin_url: str | None = Field(None, validation_alias=_env("HERALD_ADMIN_URL"))

    @field_validator("database_url")
    @classmethod
    def _psycopg_driver(cls, url: str) -> str:
        read_database_url(url)
        # Accept the URLs people paste (postgres://, postgresql://) and use psycopg 3.
        for prefix in ("postgres://", "postgresql://"):
            if url.startswith(prefix):
                return "postgresql+psycopg://" + url[len(prefix):]
        return url

    @model_validator(mode="after")
    def _jwt_checked_in_full(self) -> Settings:
        keys = [self.jwt_jwks_url, self.jwt_public_key, self.jwt_secret]
        if sum(k is not None for k in keys) > 1:
            raise ValueError("give one of HERALD_JWT_JWKS_URL, HERALD_JWT_PUBLIC_KEY and "
                             "HERALD_JWT_SECRET, not several")
        if any(keys) and not (self.jwt_issuer and self.jwt_audience):
            raise ValueError("a JWT key needs HERALD_JWT_ISSUER and HERALD_JWT_AUDIENCE too: "
                             "herald checks both")
        return self

    @field_validator("admin_url")
    @classmethod
    def _web_address(cls, url: str | None) -> str | None:
        if not url:
            return None
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
            raise ValueError("must be the admin's address with no query, e.g. "
                             "https://reports.example.com/admin or http://127.0.0.1:8501")
        return url.rstrip("/")

    @field_validator("public_url")
    @classmethod
    def _https_public_url(cls, url: str | None) -> str | None:
        if not url:
            return None
        parts = urllib.parse.urlsplit(url)
        local = parts.hostname in ("localhost", "127.0.0.1", "::1")
        if parts.scheme != "https" and not (parts.scheme == "http" and local):
            raise ValueError("must be an https:// URL (mail providers follow only https "
                             "unsubscribe links; http:// is for localhost), e.g. "
                             "https://reports.example.com")
        if not url.isascii() or not parts.hostname or parts.query or parts.fragment:
            raise ValueError("must be the address of herald api with no query, e.g. "
                             "https://reports.example.com or https://example.com/herald")
        return url.rstrip("/")

    @field_validator("mail_smtp_ca_file")
    @classmethod
    def _readable_ca_bundle(cls, path: str | None) -> str | None:
        if not path:
            return None
        if not os.path.isfile(path):
            raise ValueError("no such file; give the path of a PEM file of CA certificates")
        try:
            ssl.create_default_context(cafile=path)
        except (ssl.SSLError, OSError) as exc:
            raise ValueError(f"not a readable PEM file of CA certificates ({exc})") from None
        return path

    @field_validator("shards", mode="before")
    @classmethod
    def _split_shards(cls, value: object) -> object:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if not value:
            raise ValueError("must name at least one shard, e.g. shard-a,shard-b")
        return value

    def channel_unset(self, channel: str) -> str | None:
        """Why `channel` ("email", "telegram") cannot send with these settings, as the sentence
        to show; None when it is configured."""
        if channel == "email":
            if not self.mail_smtp_host or not self.mail_from:
                missing = "MAIL_SMTP_HOST" if not self.mail_smtp_host else "MAIL_FROM"
                return f"{missing} is not set; set MAIL_SMTP_HOST and MAIL_FROM to send e-mail."
            if self.mail_smtp_user and self.mail_smtp_pass is None:
                return ("MAIL_SMTP_USER is set without MAIL_SMTP_PASS; set both, or neither for a "
                        "relay without login.")
        if channel == "telegram" and self.telegram_bot_token is None:
            return "TELEGRAM_BOT_TOKEN is not set; set it to send to Telegram chats."
        return None


_ENV_NAMES = {
    name: (field.validation_alias.choices[0] if field.validation_alias else name.upper())
    for name, field in Settings.model_fields.items()
}
# pydantic names a field in its errors by the alias it was read under (DATABASE_URL, database_url).
_FIELDS = {alias: name for name, field in Settings.model_fields.items()
           for alias in (field.validation_alias.choices if field.validation_alias else [name])}


# Values that may carry credentials are never echoed back in an error.
_SECRET_FIELDS = {"database_url", "redis_url", "mail_smtp_pass", "telegram_bot_token", "jwt_secret"}


def load_settings(**overrides: object) -> Settings:
    """Build the settings, turning pydantic's report into one sentence naming the variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        if not first["loc"]:  # a rule across settings: its message names them, no value is shown
            raise SettingsError(f"The settings do not fit together: {first['msg'].removeprefix('Value error, ')}; "
                                f"fix them in the environment or .env.") from None
        field = _FIELDS.get(str(first["loc"][0]), str(first["loc"][0]))
        env_name = _ENV_NAMES.get(field, field)
        shown = "" if field in _SECRET_FIELDS else f", got {first.get('input')!r}"
        raise SettingsError(
            f"{env_name} is invalid ({first['msg']}{shown}); fix it in the environment or .env."
        ) from None


@functools.cache
def get_settings() -> Settings:
    """The process-wide settings; tests call `get_settings.cache_clear()` after changing env."""
    return load_settings()
