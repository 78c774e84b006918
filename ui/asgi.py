"""The page's server: Streamlit's own (``st.App``, on uvicorn) with the page's media routes
beside it. ``clapdex ui`` runs this file with ``streamlit run``; when it serves beyond this
machine it sets ``SIGN_IN``, and the gate (``ui/gate.py``) then guards the page: every request
needs a session from an API key, or, under an OpenID Connect provider, every media request
needs Streamlit's identity cookie."""

import streamlit as st
from starlette.middleware import Middleware

from server import media
from server.sign_in import RequireSession
from ui import APP
from ui.gate import guard

if (sessions := guard()) is not None:
    app = st.App(APP, routes=media.page_routes() + sessions.routes(),
                 middleware=[Middleware(RequireSession, sessions=sessions)])
else:
    app = st.App(APP, routes=media.page_routes())
