"""Weir's analytics dashboard: pipeline metrics, data quality and the dimensional model.

    weir dashboard                 # http://127.0.0.1:8501 (or: weir up, then weir status)
    streamlit run streamlit_app/streamlit_app.py --server.address 127.0.0.1

Three pages (``views/``): Pipeline (jobs, consumer batches, snapshots; live), Data quality
(Great Expectations results, ingest rejections) and Analytics (the published marts). Every
time is shown in the viewer's timezone, picked in the sidebar (the browser's by default).
Data comes through the cached loaders of ``loaders.py``, whose queries are all in
``queries.py``; the lake's settings are Weir's usual ones (``WEIR_STATE_DIR``, ``weir.toml``).
"""

from __future__ import annotations

import sys
from pathlib import Path

# `streamlit run` puts this folder first on sys.path, where `streamlit_app` would be this
# very file; the package (this folder) must win, so its parent goes first.
_ROOT = str(Path(__file__).resolve().parents[1])
if sys.path[0] != _ROOT:
    sys.path.insert(0, _ROOT)
if not hasattr(sys.modules.get("streamlit_app", sys), "__path__"):
    sys.modules.pop("streamlit_app", None)

import streamlit as st  # noqa: E402

from streamlit_app import loaders, ui  # noqa: E402

st.set_page_config(page_title="Weir", page_icon=":material/water:", layout="wide")

pages = [
    st.Page("views/pipeline.py", title="Pipeline", icon=":material/monitoring:", default=True),
    st.Page("views/quality.py", title="Data quality", icon=":material/verified:"),
    st.Page("views/analytics.py", title="Analytics", icon=":material/insights:"),
]
page = st.navigation(pages)
ui.timezone_picker()
if st.sidebar.button("Refresh data", key="refresh", help="Reload everything from the lake now."):
    loaders.clear()
page.run()
