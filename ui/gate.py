"""Who is at the page, where visitors sign in (``server.sign_in``).

One gate per server process, shared by the ASGI middleware that guards requests
(``ui/asgi.py``) and the page's script (``app.py``), which shows a visitor who has not signed
in only the way to, and one who has their name, their role and the way out. The visitor, a
``keys.Caller``, stays in the session state for what only some roles may do.
"""

from __future__ import annotations

import functools
import os

import streamlit as st

from search.config import load_settings
from server import media
from server.keys import Caller
from server.sign_in import ProviderSessions, Sessions
from ui import KEYS, PROVIDER, SIGN_IN

VISITOR = "visitor"
ROLE_MEANS = {"read": "may search and listen", "admin": "may do everything"}


@functools.cache
def guard() -> Sessions | ProviderSessions | None:
    """This process's sessions, as ``clapdex ui`` chose them; None where nobody signs in."""
    how = os.environ.get(SIGN_IN, "")
    if how == PROVIDER:
        return ProviderSessions(load_settings().admins)
    if how == KEYS:
        return Sessions(media.library)
    return None


def visitor() -> Caller | None:
    """Who signed in to this session, or None where nobody signs in. A visitor who has not
    signed in (or whose key was revoked meanwhile) is shown the way to sign in, and the script
    stops there."""
    sessions = guard()
    if sessions is None:
        return None
    if isinstance(sessions, ProviderSessions):
        if not st.user.is_logged_in:
            st.markdown("### clapdex")
            st.caption("Sign in to search this library.")
            st.button("Sign in", type="primary", icon=":material/login:", on_click=st.login)
            st.stop()
        caller = sessions.caller(st.user)
    else:
        caller = sessions.visitor(st.context.cookies)
        if caller is None:  # the middleware let the websocket in, so the key was revoked since
            st.logout()  # to the key form, by way of sign_in.SIGN_OUT
            st.stop()
    st.session_state[VISITOR] = caller
    return caller


def show(caller: Caller) -> None:
    """Who is signed in, as what, and behind it the way out."""
    with st.popover(f"{caller.name} · {caller.role}", icon=":material/account_circle:", type="tertiary"):
        st.caption(f"Signed in as {caller.name}, who {ROLE_MEANS[caller.role]}.")
        st.button("Sign out", icon=":material/logout:", on_click=st.logout, key="sign-out")
