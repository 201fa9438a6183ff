"""A hostile report file pasted or uploaded on the Reports page (or saved in its Definition
tab) is refused in one short sentence, at once, and changes nothing: an alias bomb under any
key, deep nesting, or text larger than a report file may be. The data function the page calls
is checked for every key; the page itself (Streamlit's AppTest) for the reported cases."""

from __future__ import annotations

import time
import tracemalloc

import pytest
from sqlmodel import Session, select

from admin.reports import view as rv
from models.tenancy import User
from services import reports
from services.access import Viewer, load_viewer
from tests.admin import test_reports_page
from tests.admin.test_reports_page import World, errors, reports_page, row_counts, successes
from tests.models.test_report_bounds import KEYS, MB, SHORT, alias_bomb, refused, with_value

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
world = test_reports_page.world  # Acme and Beta with the demo's report; Ed edits Acme
DEEP = "title: " + "[" * 100_000 + "]" * 100_000 + "\n"


def editor(session: Session) -> Viewer:
    """Ed, editor of Acme, as the page knows him."""
    user = session.exec(select(User).where(User.email == "ed@acme.example")).one()
    return load_viewer(session, user.id)


def one_sentence(message: str) -> bool:
    return "\n" not in message and message.endswith(".") and len(message) < SHORT


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("how", ["pasted", "uploaded"])
def test_the_save_refuses_an_alias_bomb_under_any_key(session: Session, world: World, key: str,
                                                      how: str) -> None:
    text = with_value(key, alias_bomb())
    before = row_counts(session)

    def save() -> None:
        if how == "pasted":
            reports.save_report_text(session, editor(session), world.acme, text)
        else:
            uploaded = rv.uploaded_text("bomb.yaml", text.encode())
            reports.save_report_text(session, editor(session), world.acme, uploaded, source="bomb.yaml")

    message, seconds, peak_mb = refused(save)

    assert "holds more than 20,000 keys and values" in message and one_sentence(message), message
    assert seconds < 1 and peak_mb < 100, (seconds, peak_mb)
    assert row_counts(session) == before


def test_the_save_refuses_deep_nesting_and_a_paste_too_large(session: Session, world: World) -> None:
    message, _, _ = refused(lambda: reports.save_report_text(session, editor(session), world.acme, DEEP))
    assert message == "report.yaml: nests deeper than 20 levels at line 1; a report needs a few, so flatten it."
    big = with_value("title", "x") + "# " + "x" * (3 * MB) + "\n"
    message, seconds, _ = refused(lambda: reports.save_report_text(session, editor(session), world.acme, big))
    assert message == (f"report.yaml: is {len(big.encode()):,} bytes, and a report file may be at "
                       f"most 1,048,576 bytes; split it into several reports.")
    assert seconds < 0.5


def run_timed(at) -> tuple[float, float]:
    """(seconds, peak MB allocated) of one run of the page."""
    tracemalloc.start()
    started = time.perf_counter()
    try:
        at.run()
        return time.perf_counter() - started, tracemalloc.get_traced_memory()[1] / MB
    finally:
        tracemalloc.stop()


def test_a_pasted_alias_bomb_is_one_sentence_on_the_page(session: Session, world: World,
                                                         stub_pdf) -> None:
    at = reports_page("ed@acme.example")
    before = row_counts(session)

    at.text_area(rv.NEW_TEXT).input(with_value("send_if", alias_bomb()))
    at.button(rv.UPLOAD_SAVE).click()
    seconds, peak_mb = run_timed(at)

    [shown] = errors(at)
    assert shown.startswith("report.yaml: holds more than 20,000 keys and values") and one_sentence(shown)
    assert not successes(at) and not at.exception
    assert seconds < 5 and peak_mb < 100, (seconds, peak_mb)  # the page's own run included
    assert row_counts(session) == before


def test_an_uploaded_bomb_deep_nesting_and_a_large_paste_are_one_sentence(session: Session, world: World,
                                                                          stub_pdf) -> None:
    at = reports_page("ed@acme.example")
    before = row_counts(session)

    at.get("file_uploader")[0].set_value(("bomb.yaml", with_value("title", alias_bomb()).encode(),
                                          "application/x-yaml"))
    at.button(rv.UPLOAD_SAVE).click().run()
    [shown] = errors(at)
    assert shown.startswith("bomb.yaml: holds more than 20,000 keys and values") and one_sentence(shown)

    at.get("file_uploader")[0].clear()
    at.text_area(rv.NEW_TEXT).input(DEEP)
    at.button(rv.UPLOAD_SAVE).click().run()
    assert errors(at) == ["report.yaml: nests deeper than 20 levels at line 1; a report needs a few, "
                          "so flatten it."]

    at.text_area(rv.NEW_TEXT).input("title: x\n" + "# " + "x" * (2 * MB) + "\n")
    at.button(rv.UPLOAD_SAVE).click().run()
    [shown] = errors(at)
    assert shown.startswith("report.yaml: is 2,097,164 bytes, and a report file may be at most "
                            "1,048,576 bytes") and one_sentence(shown)

    # The Definition tab's Save goes the same way.
    at.text_area(rv.DEFINITION).input(with_value("send_if", alias_bomb()))
    at.button(rv.SAVE).click().run()
    [shown] = errors(at)
    assert shown.startswith("report.yaml: holds more than 20,000 keys and values")
    assert not at.exception and row_counts(session) == before
