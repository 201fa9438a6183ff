"""The admin's web server: `herald admin` runs `streamlit run` on this file, which serves
`app.py` through Streamlit's `st.App`, with the route that sets the session cookie beside
Streamlit's own (`admin/session_cookie.py`).
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from admin import session_cookie

app = st.App(Path(__file__).with_name("app.py"), routes=session_cookie.ROUTES)
