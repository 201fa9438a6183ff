"""The API tokens page: `page.py` (the Streamlit script)."""
