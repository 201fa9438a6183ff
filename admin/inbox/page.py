"""Inbox (`herald demo` only): the e-mails and Telegram documents the demo's local SMTP server
and Telegram stand-in received, newest first; the picked one as its recipient sees it, with
its attachments to open and download.

Layout only: `services.inbox` reads the messages from the demo directory (HERALD_DEMO_DIR,
set by `herald demo`; the page is registered only then).
"""

from __future__ import annotations

import functools
import io
import os
from pathlib import Path

import pandas as pd
import streamlit as st
from sqlmodel import Session

from admin import ui
from admin.format import local_time, md, size_text
from admin.reports.view import pdf_viewer_installed
from models.errors import HeraldError
from services.access import Viewer
from services.inbox import EMAIL, Attachment, Message, MessageSummary, list_messages, read_message

PICK = "inbox_pick"            # selectbox "Message"
REFRESH = "inbox_refresh"      # button "Refresh"
CSV_PREVIEW_ROWS = 100



def page() -> None:
    _viewer, tenant = ui.current()
    directory = Path(os.environ["HERALD_DEMO_DIR"])
    st.title("Inbox")
    st.caption(md(f"What herald demo's local mail server and Telegram stand-in received (kept "
                  f"in {directory}); nothing left this machine."))
    st.button("Refresh", key=REFRESH)
    messages = list_messages(directory)
    if not messages:
        st.info("Nothing received yet; the demo's every-minute schedules deliver at the start of "
                "each minute. Refresh to look again.")
        st.stop()
    zone = tenant.timezone
    st.dataframe(table(messages, zone), hide_index=True)
    by_id = {m.id: m for m in messages}
    picked = st.selectbox("Message", list(by_id), key=PICK,
                          format_func=lambda i: f"{when(by_id[i], zone)} · {by_id[i].channel} to "
                                                f"{by_id[i].to} · {by_id[i].subject}")
    try:
        show(read_message(directory, picked), zone)
    except HeraldError as exc:
        st.error(md(str(exc)))


def when(summary: MessageSummary | Message, zone: str) -> str:
    return local_time(summary.received_at, zone)


def table(messages: list[MessageSummary], zone: str) -> pd.DataFrame:
    return pd.DataFrame({
        "Received": [when(m, zone) for m in messages],
        "Channel": [m.channel for m in messages],
        "To": [m.to for m in messages],
        "Subject": [m.subject for m in messages],
        "Attachments": [", ".join(m.attachments) or "—" for m in messages],
    })


def kept(content: bytes, session: Session, viewer: Viewer) -> bytes:
    """An attachment, handed over once the session is checked again (`ui.download_button`)."""
    return content


def show_attachment(message: Message, index: int, attachment: Attachment) -> None:
    _viewer, tenant = ui.current()
    ui.download_button(md(f"Download {attachment.filename} ({size_text(attachment.size)})"),
                       functools.partial(kept, attachment.content), tenant.id,
                       file_name=attachment.filename, mime=attachment.media_type,
                       key=f"inbox_download_{index}")
    if attachment.media_type == "application/pdf":
        if pdf_viewer_installed():
            st.pdf(attachment.content, height=700, key=f"inbox_pdf_{index}",
                   alt=f"{attachment.filename}, as attached to {message.subject}")
        else:
            st.caption("Download the PDF to open it (the in-page viewer needs streamlit[pdf]).")
    elif attachment.media_type == "text/csv":
        try:
            rows = pd.read_csv(io.BytesIO(attachment.content), nrows=CSV_PREVIEW_ROWS, dtype=str,
                               keep_default_na=False)
        except (ValueError, UnicodeDecodeError) as exc:
            st.caption(md(f"The CSV cannot be shown here ({exc}); download it to open it."))
        else:
            st.caption(md(f"The first {len(rows)} rows of {attachment.filename}"))
            st.dataframe(rows, hide_index=True, key=f"inbox_csv_{index}")


def show(message: Message, zone: str) -> None:
    st.subheader(md(message.subject or "(no subject)"))
    st.markdown(f"**From** {md(message.sender)}  \n**To** {md(message.to)}  \n"
                f"**{'Sent' if message.channel == EMAIL else 'Received'}** {when(message, zone)}")
    if message.channel == EMAIL:
        html, text = st.tabs(["HTML", "Plain text"])
        with html:
            if message.html:
                with st.container(border=True):
                    st.html(message.html)
            else:
                st.caption("This e-mail has no HTML part.")
        with text:
            st.code(message.text or "(no plain-text part)", language=None, wrap_lines=True)
    elif message.text:
        st.text(message.text)  # the Telegram caption
    for index, attachment in enumerate(message.attachments):
        with st.expander(md(f"📎 {attachment.filename} · {size_text(attachment.size)}"),
                         expanded=True):
            show_attachment(message, index, attachment)


if __name__ == "__main__":
    page()
