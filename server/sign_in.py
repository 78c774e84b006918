"""Signing in to the page, for a page served beyond this machine.

``clapdex ui`` on an address other than loopback (or with ``--sign-in``) turns this on, in one
of two ways, and either way a visitor is a ``keys.Caller``, a name and a role:

- Through an OpenID Connect provider, where the library home's ``.streamlit/secrets.toml``
  has an ``[auth]`` section (``provider_configured``). The page signs visitors in with
  Streamlit's own ``st.login``, and Streamlit keeps who they are in its identity cookie,
  signed with that section's ``cookie_secret``; the page's script shows a visitor without it
  nothing but the way to sign in. ``ProviderSessions`` checks the same cookie, the way
  Streamlit checks it for its websocket, for the page's own media routes, which Streamlit
  knows nothing of. A visitor is named by their e-mail address and may ``read``; addresses
  listed in ``admins`` (config.toml) are ``admin``.
- Otherwise with an API key (``Sessions``): every request to the page, its websocket and its
  media needs a session cookie, which ``/clapdex/sign-in`` gives for a valid key (the same
  keys as the API, ``clapdex keys add``). The cookie is signed with a secret made when the
  server starts, holds the key's name, and is checked against the catalog again at most every
  ``RECHECK_SECONDS``, so a revoked key loses the page within that time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
import tomllib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request, cookie_parser
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from search.config import ConfigError
from search.library import Library
from server import keys

COOKIE = "clapdex_session"
SESSION_SECONDS = 12 * 3600
RECHECK_SECONDS = 30.0
SIGN_IN = "/clapdex/sign-in"
# Where st.logout() sends the browser: Streamlit's route for its own cookie, taken over for ours
# when visitors sign in with keys, so the page has one way out whichever way they came in.
SIGN_OUT = "/auth/logout"
# What a browser may fetch before signing in with a key: the form, the way out, the health check.
OPEN_PATHS = (SIGN_IN, SIGN_OUT, "/_stcore/health")
# The page's own routes (server.media): under a provider, the ones to guard here.
MEDIA = "/clapdex/"
# What st.login needs in [auth] for the one provider it describes itself (Streamlit's "default").
PROVIDER_KEYS = ("redirect_uri", "cookie_secret", "client_id", "client_secret", "server_metadata_url")
# Where Streamlit's auth routes take the provider's answer: redirect_uri's path.
CALLBACK = "/oauth2callback"

_FORM = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>clapdex: sign in</title>
<meta name="viewport" content="width=device-width"><style>
body {{ font-family: system-ui, sans-serif; display: grid; place-items: center; min-height: 90vh; color: #31333f; }}
form {{ display: grid; gap: 12px; width: 340px; }} input {{ padding: 8px; font: inherit; }}
button {{ padding: 8px; font: inherit; background: #de5c14; color: white; border: 0; border-radius: 6px; }}
.problem {{ color: #a02020; }}</style></head><body><form method="post" action="{action}">
<h2>clapdex</h2><label for="key">API key</label>
<input id="key" name="key" type="password" autocomplete="current-password" required autofocus>
{problem}<button type="submit">Sign in</button>
<small>Ask whoever runs this server for a key (<code>clapdex keys add NAME --role read</code>).</small>
</form></body></html>"""


class Sessions:
    """Signed session cookies for the keys of one library."""

    sign_in_page = SIGN_IN

    def __init__(self, library: Callable[[], Library]):
        self.library = library
        self.secret = secrets.token_bytes(32)
        self.checked: dict[str, tuple[float, keys.Caller | None]] = {}
        self.lock = threading.Lock()

    def cookie_for(self, caller: keys.Caller) -> str:
        body = f"{caller.name}\n{caller.role}\n{int(time.time()) + SESSION_SECONDS}".encode()
        # No padding: "=" would make the cookie a quoted string.
        return base64.urlsafe_b64encode(body).decode().rstrip("=") + "." + self._signature(body)

    def caller_of(self, cookie: str | None) -> keys.Caller | None:
        """Who the cookie belongs to, if it is ours, unexpired, and its key still active."""
        if not cookie or "." not in cookie:
            return None
        encoded, signature = cookie.rsplit(".", 1)
        try:
            body = base64.urlsafe_b64decode(encoded.encode() + b"=" * (-len(encoded) % 4))
            name, role, expires = body.decode().split("\n")
        except ValueError:
            return None
        if not hmac.compare_digest(signature, self._signature(body)) or int(expires) < time.time():
            return None
        return self._still_active(name)

    def _still_active(self, name: str) -> keys.Caller | None:
        with self.lock:
            when, caller = self.checked.get(name, (0.0, None))
            if time.monotonic() - when > RECHECK_SECONDS:
                caller = keys.active(self.library(), name)
                self.checked[name] = (time.monotonic(), caller)
            return caller

    def _signature(self, body: bytes) -> str:
        return hmac.new(self.secret, body, hashlib.sha256).hexdigest()

    def visitor(self, cookies: Mapping[str, str]) -> keys.Caller | None:
        return self.caller_of(cookies.get(COOKIE))

    def guards(self, path: str) -> bool:
        return path not in OPEN_PATHS

    def routes(self) -> list[Route]:
        return [Route(SIGN_IN, self.sign_in, methods=["GET", "POST"]), Route(SIGN_OUT, self.sign_out)]

    async def sign_out(self, request: Request) -> Response:
        answer = RedirectResponse(SIGN_IN, status_code=303)
        answer.delete_cookie(COOKIE, httponly=True, samesite="strict", secure=request.url.scheme == "https")
        return answer

    async def sign_in(self, request: Request) -> Response:
        if request.method == "GET":
            return HTMLResponse(_FORM.format(action=SIGN_IN, problem=""))
        form = await request.form(max_files=0, max_fields=4)
        caller = keys.authenticate(self.library(), str(form.get("key", "")).strip())
        if caller is None:
            problem = '<p class="problem">That key is not valid: unknown or revoked.</p>'
            return HTMLResponse(_FORM.format(action=SIGN_IN, problem=problem), status_code=401)
        answer = RedirectResponse("/", status_code=303)
        answer.set_cookie(COOKIE, self.cookie_for(caller), max_age=SESSION_SECONDS, httponly=True, samesite="strict",
                          secure=request.url.scheme == "https")
        return answer


class ProviderSessions:
    """Visitors signed in through the OpenID Connect provider by ``st.login``.

    Streamlit's server lets anyone load the page and open its websocket (the way to sign in is
    drawn there); the page's script decides what a visitor sees, from ``st.user``. This guards
    what the script does not serve, the page's media routes, by Streamlit's identity cookie,
    read as Streamlit reads it for its websocket.
    """

    sign_in_page = "/"  # its Sign in button

    def __init__(self, admins: Iterable[str]):
        self.admins = tuple(admins)

    def caller(self, user: Mapping[str, Any]) -> keys.Caller:
        """A user as ``st.user`` (or the identity cookie) describes them."""
        return keys.Caller(str(user.get("email") or user.get("sub") or "?"), role_of(user, self.admins))

    def visitor(self, cookies: Mapping[str, str]) -> keys.Caller | None:
        user = _streamlit_user(cookies)
        return self.caller(user) if user.get("is_logged_in") is True else None

    def guards(self, path: str) -> bool:
        return path.startswith(MEDIA)

    def routes(self) -> list[Route]:
        return []  # Streamlit's own: /auth/login, /oauth2callback, /auth/logout


def role_of(user: Mapping[str, Any], admins: Iterable[str]) -> str:
    """``admin`` for a provider's user whose e-mail address ``admins`` lists, unless the provider
    says it has not verified that address (anyone may type any address into some providers);
    ``read`` for everyone else."""
    email = str(user.get("email") or "").strip().lower()
    listed = email != "" and email in {admin.strip().lower() for admin in admins}
    return "admin" if listed and user.get("email_verified") is not False else "read"


def provider_configured(secrets_file: Path) -> bool:
    """Whether ``secrets_file``, a Streamlit secrets.toml, has an ``[auth]`` section. ConfigError,
    naming what is wrong, where st.login could not sign anyone in with it."""
    if not secrets_file.is_file():
        return False
    try:
        auth = tomllib.loads(secrets_file.read_text(encoding="utf-8")).get("auth")
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{secrets_file}: {exc}") from None
    if auth is None:
        return False
    if not isinstance(auth, dict):
        raise ConfigError(f"{secrets_file}: auth must be a section, [auth]")
    missing = [key for key in PROVIDER_KEYS if not auth.get(key)]
    if missing:
        raise ConfigError(f"{secrets_file}: [auth] lacks {', '.join(missing)} (clapdex signs in through the provider "
                          "that [auth] itself describes, with all of " + ", ".join(PROVIDER_KEYS) + ")")
    redirect = urlsplit(str(auth["redirect_uri"]))
    if redirect.scheme not in ("http", "https") or not redirect.netloc or redirect.path != CALLBACK:
        raise ConfigError(f"{secrets_file}: [auth] redirect_uri must be the page's own address followed by "
                          f"{CALLBACK}, such as https://sfx.example.org{CALLBACK}")
    return True


def _streamlit_user(cookies: Mapping[str, str]) -> dict[str, Any]:
    """What Streamlit's identity cookie says, if Streamlit signed it, else {}."""
    # Streamlit's own helpers, so the cookie is read exactly as its websocket reads it: signed
    # with itsdangerous under [auth] cookie_secret, the cookie's name as salt, at most 31 days
    # old, and split into numbered chunks when large.
    from streamlit.auth_util import get_cookie_with_chunks
    from streamlit.web.server.server_util import get_cookie_secret
    from streamlit.web.server.starlette.starlette_app_utils import decode_signed_value
    from streamlit.web.server.starlette.starlette_server_config import USER_COOKIE_NAME

    secret = get_cookie_secret()

    def signed(name: str) -> bytes | None:
        value = cookies.get(name)
        return None if value is None else decode_signed_value(secret, name, value.encode("latin-1"))

    try:
        found = get_cookie_with_chunks(signed, USER_COOKIE_NAME)
        user = json.loads(found) if found else {}
    except (ValueError, UnicodeError):
        return {}
    return user if isinstance(user, dict) else {}


class RequireSession:
    """ASGI middleware: a request to a path the sessions guard needs a signed-in visitor. Without
    one, the page redirects to the key sign-in form, other requests get 401 and websockets are
    refused."""

    def __init__(self, app, sessions: Sessions | ProviderSessions):
        self.app = app
        self.sessions = sessions

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket") or not self.sessions.guards(scope["path"]):
            return await self.app(scope, receive, send)
        if self.sessions.visitor(_cookies(scope)) is not None:
            return await self.app(scope, receive, send)
        if scope["type"] == "websocket":
            return await send({"type": "websocket.close", "code": 1008})
        if scope["method"] == "GET" and scope["path"] == "/":
            answer: Response = RedirectResponse(SIGN_IN, status_code=303)
        else:
            answer = Response(f"sign in first: {self.sessions.sign_in_page}", status_code=401, media_type="text/plain")
        await answer(scope, receive, send)


def _cookies(scope) -> dict[str, str]:
    # As Starlette reads them for Streamlit: the header decoded as latin-1, values unquoted.
    found: dict[str, str] = {}
    for header, value in scope.get("headers", ()):
        if header == b"cookie":
            found.update(cookie_parser(value.decode("latin-1")))
    return found
