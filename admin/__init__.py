"""The Streamlit admin: pages lay out widgets; the functions in this package take a session
and the logged-in user, enforce the user's tenants and role, and return plain data."""
