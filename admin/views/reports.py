"""Reports (placeholder until the Reports page lands)."""

import streamlit as st

from admin import ui

viewer, tenant = ui.current()
st.title("Reports")
st.write(f"{tenant.name}: reports are coming in this release.")
