"""What is stored and how it is read: the library, its catalog and vector stores, and the query engine.

Import from the modules: ``search.library`` (``Library``: what every verb opens),
``search.config``, ``search.catalog``, ``search.store``, ``search.engine`` (``Searcher``,
``Hit``); the package itself loads nothing, so reading settings or the catalog does not
pull in the models.
"""
