"""The reports page: `page.py` (the Streamlit script) and the helpers beside it."""
