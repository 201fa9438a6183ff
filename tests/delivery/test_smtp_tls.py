"""SMTP credentials never travel in clear text: implicit TLS on 465 (or MAIL_SMTP_SECURE),
STARTTLS whenever the server offers it on any other port, certificates always verified,
and no login over a connection that stayed unencrypted unless allowed for a local relay.

The servers are aiosmtpd with certificates from a throwaway CA (trustme) that herald is
told to trust through MAIL_SMTP_CA_FILE."""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trustme

from delivery.mail import Encryption, encryption, tls_context
from models.errors import SettingsError
from models.settings import get_settings, load_settings
from pipeline.in_process import run_in_process
from tests.delivery.conftest import SENDER, csv_rows, make_schedule
from tests.delivery.servers import Login, MailSink
from tests.delivery.test_deliver_stage import manual_run, state

USER, PASSWORD = "reports@acme.example", "s3cret-Smtp-passw0rd"
READER = "anna@acme.example"
PLAINTEXT_REFUSED = (
    "the SMTP server at 127.0.0.1:{port} offers no TLS, and herald will not send MAIL_SMTP_PASS "
    "in clear text; use port 465/587 with TLS, or set MAIL_SMTP_ALLOW_PLAINTEXT_LOGIN=true for "
    "a trusted local relay.")
on_sqlite = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
# aiosmtpd warns whenever it offers AUTH without STARTTLS, which some tests ask of it.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    """The CA herald is told to trust."""
    return trustme.CA()


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> Path:
    path = tmp_path / "smtp-ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


def server_context(ca: trustme.CA) -> ssl.SSLContext:
    """A server's TLS context, its certificate for 127.0.0.1 signed by `ca`."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@pytest.fixture
def smtp_server(monkeypatch: pytest.MonkeyPatch, fast_retries, ca_file: Path
                ) -> Iterator[Callable[..., MailSink]]:
    """Starts an aiosmtpd server that requires USER/PASSWORD and points herald's MAIL_ settings
    at it (MAIL_SMTP_CA_FILE: the test CA); keyword options go to aiosmtpd."""
    started: list[MailSink] = []

    def start(*, secure: bool = False, **options) -> MailSink:
        sink = MailSink(accounts={USER: PASSWORD}, **options).start()
        started.append(sink)
        for name, value in {"MAIL_SMTP_HOST": "127.0.0.1", "MAIL_SMTP_PORT": str(sink.port),
                            "MAIL_FROM": SENDER, "MAIL_SMTP_USER": USER, "MAIL_SMTP_PASS": PASSWORD,
                            "MAIL_SMTP_CA_FILE": str(ca_file),
                            "MAIL_SMTP_SECURE": "true" if secure else "false"}.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()
        return sink

    yield start
    for sink in started:
        sink.stop()


def deliver(videos_file: str) -> int:
    """A CSV report for READER, through query, render and deliver; returns the run id."""
    run_id = manual_run(make_schedule(videos_file, emails=[READER], formats=["csv"]))
    run_in_process(run_id)
    return run_id


def assert_delivered(run_id: int, sink: MailSink) -> None:
    """READER got one message with the CSV, and the run says so."""
    [mail] = sink.to(READER)
    [csv_content] = mail.attachments().values()
    assert len(csv_rows(csv_content)) == 1 + 5
    run, _, deliveries = state(run_id)
    assert deliveries[READER].status == "sent" and run.status == "success"


def test_port_465_is_implicit_tls_and_every_other_port_starttls_when_offered() -> None:
    assert encryption(465, secure=False) == Encryption.IMPLICIT_TLS
    assert encryption(2465, secure=True) == Encryption.IMPLICIT_TLS  # MAIL_SMTP_SECURE
    for port in (587, 25, 2525, 8025):
        assert encryption(port, secure=False) == Encryption.STARTTLS_WHEN_OFFERED


@on_sqlite
def test_implicit_tls_as_on_465_logs_in_and_delivers(
    db_url: str, videos_file: str, smtp_server, ca: trustme.CA
) -> None:
    # Given a server speaking TLS from the first byte, as on port 465 (MAIL_SMTP_SECURE=true);
    # aiosmtpd does not see implicit TLS, so it is told to offer AUTH without STARTTLS
    sink = smtp_server(secure=True, ssl_context=server_context(ca), auth_require_tls=False)

    run_id = deliver(videos_file)

    # Then herald logged in with its credentials, encrypted, and the message arrived
    [login] = sink.logins
    assert (login.login, login.password) == (USER, PASSWORD) and login.tls.startswith("TLSv1")
    assert_delivered(run_id, sink)
    assert sink.to(READER)[0].tls.startswith("TLSv1")


@on_sqlite
def test_starttls_on_any_port_encrypts_before_the_login(
    db_url: str, videos_file: str, smtp_server, ca: trustme.CA
) -> None:
    # Given a server on an ordinary port that offers STARTTLS (and takes no mail without it)
    sink = smtp_server(tls_context=server_context(ca), require_starttls=True)

    run_id = deliver(videos_file)

    # Then the session was encrypted before AUTH, and the message arrived over it
    [login] = sink.logins
    assert (login.login, login.password) == (USER, PASSWORD) and login.tls.startswith("TLSv1")
    assert_delivered(run_id, sink)
    assert sink.to(READER)[0].tls is not None


@on_sqlite
def test_a_relay_without_login_that_offers_starttls_gets_it(
    db_url: str, videos_file: str, ca: trustme.CA, ca_file: Path, monkeypatch, fast_retries
) -> None:
    # Given a relay that needs no login but offers STARTTLS, and herald has no MAIL_SMTP_USER
    sink = MailSink(tls_context=server_context(ca)).start()
    try:
        for name, value in {"MAIL_SMTP_HOST": "127.0.0.1", "MAIL_SMTP_PORT": str(sink.port),
                            "MAIL_FROM": SENDER, "MAIL_SMTP_CA_FILE": str(ca_file)}.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()

        run_id = deliver(videos_file)
    finally:
        sink.stop()

    # Then the message still went encrypted
    assert_delivered(run_id, sink)
    assert sink.to(READER)[0].tls is not None


@on_sqlite
def test_no_login_over_a_server_that_offers_no_tls(
    db_url: str, videos_file: str, smtp_server, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a plaintext-only server that would take a login in clear text, and MAIL_SMTP_USER set
    sink = smtp_server(auth_require_tls=False)

    run_id = deliver(videos_file)

    # Then herald refused to log in, at once and for good, saying why and what to do
    run, schedule, deliveries = state(run_id)
    delivery = deliveries[READER]
    assert (delivery.status, delivery.attempts) == ("failed", 1)
    assert delivery.error == PLAINTEXT_REFUSED.format(port=sink.port)
    assert run.status == "failed" and PLAINTEXT_REFUSED.format(port=sink.port) in run.error
    # and the server saw no login and no message
    assert sink.logins == [] and sink.mails == [] and sink.rcpt_attempts == {}
    # and the password is written nowhere
    written = [run.error, schedule.last_error, delivery.error, caplog.text]
    assert not any(PASSWORD in (text or "") for text in written)


@on_sqlite
def test_a_certificate_from_an_untrusted_ca_is_a_permanent_tls_error(
    db_url: str, videos_file: str, smtp_server
) -> None:
    # Given a STARTTLS server whose certificate comes from a CA herald does not trust
    sink = smtp_server(tls_context=server_context(trustme.CA()), require_starttls=True)

    run_id = deliver(videos_file)

    # Then the delivery failed at once, naming the problem and the setting that fixes it
    run, _, deliveries = state(run_id)
    delivery = deliveries[READER]
    assert (delivery.status, delivery.attempts) == ("failed", 1)
    assert delivery.error.startswith(
        f"the SMTP server at 127.0.0.1:{sink.port} presented a certificate herald cannot verify "
        f"(unable to get local issuer certificate); set MAIL_SMTP_CA_FILE")
    assert run.status == "failed"
    # and nothing was said past the handshake: no login, no message
    assert sink.logins == [] and sink.mails == []


@on_sqlite
def test_a_trusted_local_relay_may_take_the_login_in_clear_text_when_allowed(
    db_url: str, videos_file: str, smtp_server, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a plaintext-only relay and MAIL_SMTP_ALLOW_PLAINTEXT_LOGIN=true
    sink = smtp_server(auth_require_tls=False)
    monkeypatch.setenv("MAIL_SMTP_ALLOW_PLAINTEXT_LOGIN", "true")
    get_settings.cache_clear()

    run_id = deliver(videos_file)

    # Then herald logged in over the unencrypted connection and the message arrived
    assert sink.logins == [Login(USER, PASSWORD, None)]
    assert_delivered(run_id, sink)


def test_a_missing_ca_file_stops_herald_naming_the_variable(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-ca.pem"
    with pytest.raises(SettingsError) as raised:
        load_settings(mail_smtp_ca_file=str(missing))
    assert str(raised.value).startswith(
        "MAIL_SMTP_CA_FILE is invalid (Value error, no such file; give the path of a PEM file "
        "of CA certificates")


def test_the_tls_context_is_made_once_and_again_when_the_ca_file_is_rewritten(
    ca: trustme.CA, ca_file: Path
) -> None:
    # Given herald's context for the CA file, asked for twice
    first = tls_context(str(ca_file))
    assert tls_context(str(ca_file)) is first
    assert first.get_ca_certs(binary_form=True) == [der(ca)]

    # When the operator replaces the CA in the same file
    rotated = trustme.CA()
    rotated.cert_pem.write_to_path(str(ca_file))

    # Then the next connection trusts the new CA, without a restart
    again = tls_context(str(ca_file))
    assert again is not first
    assert again.get_ca_certs(binary_form=True) == [der(rotated)]


def der(ca: trustme.CA) -> bytes:
    return ssl.PEM_cert_to_DER_cert(ca.cert_pem.bytes().decode())
