"""Weir's analytics dashboard (Streamlit + Plotly); the entry script is
``streamlit_app/streamlit_app.py``, run by ``weir dashboard`` or ``weir up``."""
