"""The page's server: Streamlit's own (``st.App``, on uvicorn) with the page's media routes
beside it. ``clapdex ui`` runs this file with ``streamlit run``; when it serves beyond this
machine it sets ``SIGN_IN`` and every request then needs a session from an API key."""

import os

import streamlit as st
from starlette.middleware import Middleware

from server import media
from server.sign_in import RequireSession, Sessions
from ui import APP, SIGN_IN

if os.environ.get(SIGN_IN) == "1":
    sessions = Sessions(media.library)
    app = st.App(APP, routes=media.page_routes() + sessions.routes(),
                 middleware=[Middleware(RequireSession, sessions=sessions)])
else:
    app = st.App(APP, routes=media.page_routes())
