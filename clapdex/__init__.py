"""clapdex: semantic search for sound libraries. ``clapdex.cli`` is the command line."""
