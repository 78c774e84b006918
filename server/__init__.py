"""The HTTP API for teams and tools (`clapdex serve`, coming): search a library from scripts,
plugins and other machines, each caller with a key of its own (``server.keys``)."""
