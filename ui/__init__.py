"""The Streamlit page (``app.py``), served by ``clapdex ui``."""

from pathlib import Path

APP = Path(__file__).with_name("app.py")
# APP with its media routes; not "server.py": streamlit puts ui/ first on the path, where that
# name would hide the server package.
SERVER = Path(__file__).with_name("asgi.py")
FAVICON = Path(__file__).with_name("favicon.png")
# Set by `clapdex ui` for a page served beyond loopback (or with --sign-in): how visitors sign in,
# PROVIDER (an OpenID Connect provider, by st.login) or KEYS (API keys); unset, nobody signs in.
SIGN_IN = "CLAPDEX_UI_SIGN_IN"
PROVIDER, KEYS = "provider", "keys"
# Streamlit's secrets file, in the library home: an [auth] section there names the provider.
SECRETS = Path(".streamlit") / "secrets.toml"

# Query clips are short by nature; bound what one upload may cost.
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
MAX_QUERY_SECONDS = 30.0
