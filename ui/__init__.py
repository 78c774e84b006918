"""The Streamlit page (``app.py``), served by ``clapdex ui``."""

from pathlib import Path

APP = Path(__file__).with_name("app.py")
SERVER = Path(__file__).with_name("server.py")  # APP with its media routes
FAVICON = Path(__file__).with_name("favicon.png")

# Query clips are short by nature; bound what one upload may cost.
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
MAX_QUERY_SECONDS = 30.0
