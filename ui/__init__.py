"""Streamlit-side helpers shared by every page: data access, login and roles, widgets."""
