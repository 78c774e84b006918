"""The page's server: Streamlit's own (``st.App``, on uvicorn) with the page's media routes
beside it. ``clapdex ui`` runs this file with ``streamlit run``."""

import streamlit as st

from ui import APP, media

app = st.App(APP, routes=media.routes())
