"""Settings come from the environment; a bad value stops herald with one sentence naming it."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from herald.cli import app
from models.errors import SettingsError
from models.settings import get_settings, load_settings


@pytest.fixture(autouse=True)
def fresh_settings():
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_defaults_give_the_embedded_mode(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)  # no .env here
    for name in ("DATABASE_URL", "REDIS_URL", "HERALD_SHARDS"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings()
    assert settings.database_url == "sqlite:///herald.db"
    assert settings.redis_url is None
    assert settings.mail_smtp_port == 587
    assert settings.shards == ["default"]


def test_environment_and_dotenv_are_read(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("MAIL_SMTP_PORT=465\nHERALD_SHARDS=a, b ,c\n")
    monkeypatch.setenv("DATABASE_URL", "postgres://u:p@h/db")
    monkeypatch.setenv("RENDER_PDF_STUB", "true")
    settings = load_settings()
    assert settings.mail_smtp_port == 465
    assert settings.shards == ["a", "b", "c"]
    assert settings.database_url == "postgresql+psycopg://u:p@h/db"
    assert settings.render_pdf_stub is True


@pytest.mark.parametrize(("name", "value", "message"), [
    ("MAIL_SMTP_PORT", "smtp", "MAIL_SMTP_PORT is invalid (Input should be a valid integer"),
    ("MAIL_SMTP_PORT", "70000", "MAIL_SMTP_PORT is invalid (Input should be less than or equal to 65535"),
    ("HERALD_SHARDS", " , ", "HERALD_SHARDS is invalid (Value error, must name at least one shard"),
    ("RENDER_PDF_STUB", "perhaps", "RENDER_PDF_STUB is invalid (Input should be a valid boolean"),
])
def test_a_bad_variable_fails_every_command_naming_it(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=message.replace("(", r"\(")):
        load_settings()
    result = CliRunner().invoke(app, ["schedule", "list", "--tenant", "x"])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: {message}")
    assert result.stderr.count("\n") == 1
