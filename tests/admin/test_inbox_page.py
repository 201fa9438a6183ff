"""The Inbox page (`herald demo` only) as the demo's user meets it (Streamlit's AppTest, logged
in through the form on the demo's own SQLite database): what the demo's SMTP server and
Telegram stand-in received from herald's pipeline, newest first; the picked message as its
recipient sees it, its attachments offered for download and the PDF shown."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from herald.demo import control_url, new_login, seed_demo, stored_login
from models.db import get_engine, utcnow
from models.settings import get_settings
from tests.admin.test_app_login import log_in, new_app, shown
from tests.herald.test_demo import deliver_demo_schedules


@pytest.fixture
def demo_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    directory = tmp_path / "demo"
    yield directory
    get_engine(control_url(directory)).dispose()
    get_settings.cache_clear()


def inbox(directory: Path) -> AppTest:
    login = stored_login(directory)
    at = log_in(new_app().run(), login.email, login.password)
    assert not at.exception, at.exception
    at.switch_page("inbox/page.py").run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Inbox"
    return at


PICK = "inbox_pick"  # the page's selectbox "Message"


def pdf_viewers(at: AppTest) -> list:
    return [e for e in at.get("bidi_component") if e.proto.component_name == "streamlit-pdf.pdf_viewer"]


def downloads(at: AppTest) -> list[str]:
    return [b.label.split(" (")[0] for b in at.get("download_button")]


def test_the_inbox_lists_what_was_sent_and_opens_each_message(
        demo_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the demo's two every-minute schedules ran once (e-mail first, then Telegram)
    deliver_demo_schedules(demo_dir, monkeypatch)
    monkeypatch.setenv("DATABASE_URL", control_url(demo_dir))
    monkeypatch.setenv("HERALD_DEMO_DIR", str(demo_dir))

    # When the demo's user opens the Inbox
    at = inbox(demo_dir)

    # Then both messages are listed, newest first, with their attachments
    [table] = at.dataframe
    listed = table.value
    assert list(listed["Channel"]) == ["Telegram", "e-mail"]
    assert list(listed["To"]) == ["chat 123456789", "team@example.com"]
    assert listed["Subject"][1].startswith("Video performance")
    assert [a.rsplit(".", 1)[1] for a in listed["Attachments"][1].split(", ")] == ["pdf", "csv"]
    assert len(at.selectbox(PICK).options) == 2

    # and the newest, the Telegram document, is open: its caption, the PDF to download and read
    assert "Video performance (Demo Media)" in [t.value.split("\n")[0] for t in at.text]
    pdf_name = listed["Attachments"][0]
    assert downloads(at) == [f"Download {pdf_name}"]
    assert len(pdf_viewers(at)) == 1

    # When the e-mail is picked
    at.selectbox(PICK).select_index(1).run()
    assert not at.exception, at.exception

    # Then it shows as a mail client would: sender, the HTML and text bodies, both attachments
    page = shown(at.main)
    assert "**From** Herald demo <reports@example.com>" in page
    assert "**To** team@example.com" in page
    assert [t.label for t in at.tabs] == ["HTML", "Plain text"]
    assert "Total views" in at.get("html")[0].proto.body
    assert at.code[0].value  # the text/plain part, as it arrived
    assert downloads(at) == [f"Download {name}" for name in listed["Attachments"][1].split(", ")]
    assert len(pdf_viewers(at)) == 1
    csv_rows = [d for d in at.dataframe if "channel_username" in d.value.columns]
    assert len(csv_rows) == 1 and len(csv_rows[0].value) == 100  # the CSV's first rows
    assert any(c.value.startswith("The first 100 rows of ") for c in at.caption)


def test_an_empty_inbox_says_when_to_look_again(demo_dir: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    seed_demo(demo_dir, new_login({}), utcnow())
    monkeypatch.setenv("DATABASE_URL", control_url(demo_dir))
    monkeypatch.setenv("HERALD_DEMO_DIR", str(demo_dir))
    get_settings.cache_clear()
    at = inbox(demo_dir)
    assert [i.value for i in at.info] == [
        "Nothing received yet; the demo's every-minute schedules deliver at the start of each "
        "minute. Refresh to look again."]
    assert not at.dataframe and not at.get("download_button")


def test_without_the_demo_there_is_no_inbox_page(demo_dir: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    seed_demo(demo_dir, new_login({}), utcnow())
    monkeypatch.setenv("DATABASE_URL", control_url(demo_dir))
    monkeypatch.delenv("HERALD_DEMO_DIR", raising=False)
    get_settings.cache_clear()
    login = stored_login(demo_dir)
    at = log_in(new_app().run(), login.email, login.password)
    assert at.title[0].value == "Schedules"
    with pytest.raises(ValueError):  # no page script is registered at that path
        at.switch_page("inbox/page.py")
