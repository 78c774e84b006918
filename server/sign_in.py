"""Signing in to the page with an API key, for a page served beyond this machine.

``clapdex ui`` on an address other than loopback turns this on: every request to the page,
its websocket and its media needs a session cookie, which ``/clapdex/sign-in`` gives for a
valid key (the same keys as the API, ``clapdex keys add``). The cookie is signed with a secret
made when the server starts, holds the key's name, and is checked against the catalog again at
most every ``RECHECK_SECONDS``, so a revoked key loses the page within that time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from search.library import Library
from server import keys

COOKIE = "clapdex_session"
SESSION_SECONDS = 12 * 3600
RECHECK_SECONDS = 30.0
SIGN_IN = "/clapdex/sign-in"
# What a browser may fetch before signing in: the form itself and the health check.
OPEN_PATHS = (SIGN_IN, "/_stcore/health")

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

    def routes(self) -> list[Route]:
        return [Route(SIGN_IN, self.sign_in, methods=["GET", "POST"])]

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


class RequireSession:
    """ASGI middleware: without a valid session, pages redirect to the sign-in form, other
    requests get 401 and websockets are refused."""

    def __init__(self, app, sessions: Sessions):
        self.app = app
        self.sessions = sessions

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket") or scope["path"] in OPEN_PATHS:
            return await self.app(scope, receive, send)
        cookie = _cookie(scope, COOKIE)
        if self.sessions.caller_of(cookie) is not None:
            return await self.app(scope, receive, send)
        if scope["type"] == "websocket":
            return await send({"type": "websocket.close", "code": 1008})
        if scope["method"] == "GET" and scope["path"] == "/":
            answer: Response = RedirectResponse(SIGN_IN, status_code=303)
        else:
            answer = Response(f"sign in first: {SIGN_IN}", status_code=401, media_type="text/plain")
        await answer(scope, receive, send)


def _cookie(scope, name: str) -> str | None:
    for header, value in scope.get("headers", ()):
        if header == b"cookie":
            for part in value.decode("latin-1").split(";"):
                key, _, found = part.strip().partition("=")
                if key == name:
                    return found.strip('"')
    return None
