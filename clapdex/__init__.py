"""clapdex: semantic search for sound libraries. ``clapdex.cli`` is the command line."""

__version__ = "0.1.0"  # the one place it is written: pyproject.toml reads it from here
