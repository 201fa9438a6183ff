"""Schedules (placeholder until the Schedules page lands)."""

import streamlit as st

from admin import ui

viewer, tenant = ui.current()
st.title("Schedules")
st.write(f"{tenant.name}: schedules are coming in this release.")
