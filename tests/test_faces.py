"""Send now, send a test and resend failed exist once each (`services.runs`), whichever face asks:
the CLI, the admin (through its pages, as a browser drives them) and a Python shell
(`jobs.shell`) make the same runs, the same deliveries and the same change-audit rows; only who
asked differs ("cli" for the operator's command line and shell, the user's e-mail in the admin).

Embedded mode (no REDIS_URL): each face's send runs the pipeline at once, in its own process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, select
from streamlit.testing.v1 import AppTest

from models.audit import ChangeEvent
from models.db import utcnow
from models.runs import Delivery, ReportRun
from models.schedules import Schedule
from models.settings import get_settings
from models.tenancy import Tenant
from services import members, runs
from services.access import OPERATOR
from tests.admin.test_app_login import PASSWORD, log_in, new_app
from tests.delivery.conftest import fast_retries, mail_sink, make_schedule, videos_file  # noqa: F401
from tests.delivery.servers import MailSink
from tests.jobs.helpers import in_process

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)]
EDITOR = "ed@acme.example"
GOOD, BAD, TYPED = "boss@acme.example", "gone@acme.example", "qa@acme.example"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def embedded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.setenv("RENDER_PDF_STUB", "true")
    get_settings.cache_clear()


@pytest.fixture
def schedules(session: Session, videos_file: str, mail_sink: MailSink) -> dict[str, int]:  # noqa: F811
    """One schedule per face, alike (a CSV to GOOD and BAD), in one tenant Ed edits."""
    made = {face: make_schedule(videos_file, emails=[GOOD, BAD], formats=("csv",), slug=f"acme-{face}")
            for face in ("cli", "admin", "shell")}
    for face, schedule_id in made.items():
        tenant = session.get(Tenant, session.get(Schedule, schedule_id).tenant_id)
        tenant.name = f"Acme {face}"  # the sidebar's tenant picker shows names
        members.grant(session, OPERATOR, tenant.id, EDITOR, "editor",
                      PASSWORD if face == "cli" else None)
    session.commit()
    return made


def cli(*args: Any) -> None:
    done = subprocess.run([sys.executable, "-m", "herald", *map(str, args)], capture_output=True,
                          text=True, env=os.environ, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr


def shell(lines: str) -> None:
    done = subprocess.run([sys.executable, "-"], input=lines, capture_output=True, text=True,
                          env=os.environ, cwd=ROOT, timeout=180)
    assert done.returncode == 0, done.stderr


def admin(tenant_slug: str, action: Callable[[AppTest], None], page: str | None = None,
          run: int | None = None) -> None:
    at = log_in(new_app().run(), EDITOR)
    at.sidebar.selectbox[0].select(tenant_slug).run()
    if page:
        at.switch_page(page)
    if run is not None:
        at.query_params["run"] = str(run)
    at.run()
    assert not at.exception, at.exception
    action(at)
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]


def picked(schedule_id: int, key: str, **fields: str) -> Callable[[AppTest], None]:
    def act(at: AppTest) -> None:
        at.selectbox(key="schedule_pick").select(schedule_id).run()
        for name, value in fields.items():
            at.text_area(key=name).input(value)
        at.button(key=key).click().run()
    return act


def what_each_face_made(session: Session, schedules: dict[str, int],
                        action: str) -> dict[str, tuple]:
    """Per face: its schedule's newest run (its kind, status, deliveries and who asked) and the
    change-audit rows of its `action`, with each run's id read as "the run"."""
    session.rollback()  # read what the faces committed
    made = {}
    for face, schedule_id in schedules.items():
        run = session.exec(select(ReportRun).where(ReportRun.schedule_id == schedule_id)
                           .order_by(ReportRun.id.desc())).first()
        deliveries = session.exec(select(Delivery).where(Delivery.run_id == run.id)
                                  .order_by(Delivery.recipient)).all()
        events = session.exec(select(ChangeEvent).where(
            ChangeEvent.action == action,
            ChangeEvent.tenant_id == run.tenant_id).order_by(ChangeEvent.id)).all()
        made[face] = (
            (run.manual, run.test, run.test_recipients, run.status, run.requested_by),
            [(d.channel, d.recipient, d.status, d.attempts) for d in deliveries],
            [(e.object_type, e.action, e.actor, _named(e.changes, run.id)) for e in events])
    return made


def _named(changes: dict, run_id: int) -> dict:
    return {k: [None, "the run"] if k == "run" and old_new == [None, run_id] else old_new
            for k, old_new in changes.items()}


def asked_by(made: dict[str, tuple], face: str) -> str:
    return EDITOR if face == "admin" else "cli"


def alike(made: dict[str, tuple], run_by_face: bool = True) -> None:
    """The three faces made the same rows, but for who asked (the run's `requested_by` too,
    when the face made the run)."""
    def without_who(face: str) -> tuple:
        run, deliveries, events = made[face]
        who = asked_by(made, face)
        assert all(e[2] == who for e in events), (face, made[face])
        assert run[-1] == who or not run_by_face, (face, made[face])
        return run[:-1] if run_by_face else run, deliveries, [(e[0], e[1], e[3]) for e in events]

    assert without_who("cli") == without_who("admin") == without_who("shell")


def test_send_now_is_one_implementation_behind_every_face(
    session: Session, schedules: dict[str, int], mail_sink: MailSink  # noqa: F811
) -> None:
    cli("send-now", schedules["cli"])
    admin("acme-admin", picked(schedules["admin"], "schedule_send_now"))
    shell(f"from jobs.shell import drain, send_now\nsend_now({schedules['shell']})\ndrain(timeout_s=120)\n")

    made = what_each_face_made(session, schedules, "sent now")
    alike(made)
    run, deliveries, events = made["cli"]
    assert run[:4] == (True, False, None, "success")
    assert deliveries == [("email", GOOD, "sent", 1), ("email", BAD, "sent", 1)]
    assert events == [("schedule", "sent now", "cli", {"run": [None, "the run"]})]
    assert sorted(r for m in mail_sink.mails for r in m.rcpt_tos) == sorted([GOOD, BAD] * 3)


def test_send_a_test_is_one_implementation_behind_every_face(
    session: Session, schedules: dict[str, int], mail_sink: MailSink  # noqa: F811
) -> None:
    cli("send-test", schedules["cli"], "--email", TYPED)
    admin("acme-admin", picked(schedules["admin"], "schedule_send_test", test_emails=TYPED))
    shell(f"from jobs.shell import drain, send_test\nsend_test({schedules['shell']}, emails=['{TYPED}'])\n"
          f"drain(timeout_s=120)\n")

    made = what_each_face_made(session, schedules, "test sent")
    alike(made)
    run, deliveries, events = made["shell"]
    assert run[:4] == (True, True, [["email", TYPED]], "success")
    assert deliveries == [("email", TYPED, "sent", 1)]
    assert events == [("schedule", "test sent", "cli",
                       {"run": [None, "the run"], "to": [None, [f"email {TYPED}"]]})]
    assert [m.rcpt_tos for m in mail_sink.mails] == [[TYPED]] * 3  # nobody else


def test_resend_failed_is_one_implementation_behind_every_face(
    session: Session, schedules: dict[str, int], mail_sink: MailSink  # noqa: F811
) -> None:
    # Given one partial run per schedule: the mail server refused BAD, which is fixed since
    mail_sink.refuse[BAD] = (550, "5.1.1 <gone@acme.example>: mailbox unavailable")
    partial = {face: runs.send_now(session, OPERATOR, schedule_id, now=utcnow(),
                                   dispatch=in_process).run_id
               for face, schedule_id in schedules.items()}
    assert all(session.get(ReportRun, i).status == "partial" for i in partial.values())
    del mail_sink.refuse[BAD]
    mail_sink.mails.clear()

    cli("resend", partial["cli"])
    admin("acme-admin", lambda at: at.button(key="history_resend").click().run(),
          page="history/page.py", run=partial["admin"])
    shell(f"from jobs.shell import drain, resend_failed\nresend_failed({partial['shell']})\n"
          f"drain(timeout_s=120)\n")

    made = what_each_face_made(session, schedules, "resend")
    alike(made, run_by_face=False)  # the run is the one sent before
    run, deliveries, events = made["admin"]
    assert run[:4] == (True, False, None, "success")
    assert deliveries == [("email", GOOD, "sent", 1), ("email", BAD, "sent", 2)]
    [(kind, action, actor, changes)] = events
    assert (kind, action, actor) == ("run", "resend", EDITOR)
    assert changes["status"] == ["partial", "queued"] and changes["resent"] == [None, [f"email {BAD}"]]
    assert [m.rcpt_tos for m in mail_sink.mails] == [[BAD]] * 3  # only the refused one, once each
