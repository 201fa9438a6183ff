"""redact() masks URL and key=value passwords, configured and remembered secrets; herald's
log records go through it."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator

import pytest

from models.redact import redact, remember_secret
from models.settings import get_settings


@pytest.fixture(autouse=True)
def no_configured_secrets(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("MAIL_SMTP_PASS", "TELEGRAM_BOT_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.mark.parametrize(("text", "expected"), [
    ("connect to postgresql://reader:hunter2@db.example/sales failed",
     "connect to postgresql://reader:***@db.example/sales failed"),
    ("postgresql+psycopg://reader:p%40ss@db:5432/x", "postgresql+psycopg://reader:***@db:5432/x"),
    ("postgresql://reader@db.example/sales", "postgresql://reader@db.example/sales"),
])
def test_url_passwords_are_masked(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("GET https://api.example/v1?password=hunter2&user=anna",
     "GET https://api.example/v1?password=***&user=anna"),
    ("https://api.example/v1?user=anna&Password=hunter2", "https://api.example/v1?user=anna&Password=***"),
    ("https://api.example/v1?token=abc.def-ghi", "https://api.example/v1?token=***"),
    ("https://api.example/v1?api_key=K3Y&pwd=P4SS&secret=S3C&pass=PA55",
     "https://api.example/v1?api_key=***&pwd=***&secret=***&pass=***"),
    ("https://api.example/v1?access_token=abc123&page=2", "https://api.example/v1?access_token=***&page=2"),
])
def test_query_parameter_passwords_are_masked(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("host=db port=5432 user=reader password=hunter2 dbname=sales",
     "host=db port=5432 user=reader password=*** dbname=sales"),
    ("host=db PASSWORD = hunter2 dbname=sales", "host=db PASSWORD = *** dbname=sales"),
    ("host=db password='two words\\' quoted' dbname=sales", "host=db password=*** dbname=sales"),
    ("Driver={ODBC};Server=db;Uid=reader;Pwd=hunter2;", "Driver={ODBC};Server=db;Uid=reader;Pwd=***"),
    ('connection "host=db password=hunter2" refused', 'connection "host=db password=***" refused'),
])
def test_connection_string_passwords_are_masked(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize("text", [
    "the password is required; pass it with --password-stdin",
    "bypass=1 compass=north tokens: 3",
    "SELECT sum(views) AS value FROM videos WHERE campaign_tag = :campaign",
])
def test_text_without_a_secret_is_unchanged(text: str) -> None:
    assert redact(text) == text


def test_configured_secrets_are_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAIL_SMTP_PASS", "smtp-Pa55word")
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "4242:bot-token-value")
    get_settings.cache_clear()

    text = redact("login smtp-Pa55word refused; GET /bot4242:bot-token-value/sendDocument")

    assert text == "login *** refused; GET /bot***/sendDocument"


def test_remembered_secrets_are_masked_from_then_on() -> None:
    secret = unique("datasource")
    assert redact(f"invalid input syntax: {secret!r}") == f"invalid input syntax: {secret!r}"

    remember_secret(secret)

    assert redact(f"invalid input syntax: {secret!r}") == "invalid input syntax: '***'"
    assert secret not in redact(f"{secret}{secret} and {secret.upper()}{secret}")


def test_the_longest_secret_is_masked_first() -> None:
    short = unique("abcd")
    remember_secret(short)
    remember_secret(f"{short}-longer")

    assert redact(f"[{short}-longer]") == "[***]"


def test_values_shorter_than_four_characters_are_not_remembered() -> None:
    remember_secret("xyz")
    remember_secret("")
    remember_secret(None)

    assert redact("xyz is not masked") == "xyz is not masked"


def test_every_herald_logger_redacts_its_formatted_message(caplog: pytest.LogCaptureFixture) -> None:
    secret = unique("logged")
    remember_secret(secret)
    caplog.set_level(logging.INFO)

    logging.getLogger("herald").warning("top %s", secret)
    logging.getLogger("herald.pipeline").info("connecting to %s", "postgresql://u:hunter2@db/x")
    logging.getLogger("herald.some.deeper.module").error(f"failed with password={secret} here")

    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["top ***", "connecting to postgresql://u:***@db/x", "failed with password=*** here"]
    assert secret not in caplog.text and "hunter2" not in caplog.text


def test_other_loggers_are_left_alone(caplog: pytest.LogCaptureFixture) -> None:
    secret = unique("elsewhere")
    remember_secret(secret)

    logging.getLogger("heraldry").warning("%s", secret)
    logging.getLogger("sqlalchemy.engine").warning("%s", secret)

    assert [r.getMessage() for r in caplog.records] == [secret, secret]
    assert [r.args for r in caplog.records] == [(secret,), (secret,)]


def test_a_record_without_secrets_keeps_its_arguments(caplog: pytest.LogCaptureFixture) -> None:
    logging.getLogger("herald.tick").warning("run %s finished: %s", 7, "success")

    [record] = caplog.records
    assert (record.msg, record.args) == ("run %s finished: %s", (7, "success"))
