"""One library home: its settings, its catalog and vector store, and the model that reads it.

Every verb starts here. Opening a library that was never indexed is refused with
``NoIndexError`` before anything is created or any model is loaded; ``create=True`` (the
indexer) makes a new one. The encoder is loaded on first use, chosen as the index
remembers it: the same model, from the same weights file, found again where it was.
"""

from __future__ import annotations

import logging
import os

from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from encoders import Encoder, MissingWeightsError, list_models, load_encoder
from search.catalog import Catalog, CatalogMissing, ModelIdentity
from search.config import ConfigError, Settings
from search.store import VectorStore, open_store

log = logging.getLogger(__name__)

DEFAULT_MODEL = "msclap-2023"
SHIPPED_MODEL = "clapdex-compact"


class NoIndexError(LookupError):
    """A verb that reads an index was pointed at a home (or catalog) that holds none."""

    def __init__(self, where: str):
        super().__init__(f"no index in {where}; run `clapdex index FOLDER` to make one")


class CatalogUnreachable(ConnectionError):
    """The catalog's database cannot be opened: a server down, a wrong password, a locked file."""


class Library:
    """The catalog, the vector store and the encoder of one library, opened once per verb.

    ``create=False`` (every reading verb) raises NoIndexError, creating nothing, unless an
    index exists; ``encoder`` hands over one already loaded (tests, the indexer's caller).
    """

    def __init__(self, settings: Settings, *, create: bool = False, encoder: Encoder | None = None):
        self.settings = settings
        try:
            self.catalog = Catalog(settings.catalog_url, create=create)
            self.indexed = self.catalog.model()
        except CatalogMissing:
            raise NoIndexError(self.where) from None
        except OperationalError as error:
            raise CatalogUnreachable(f"the catalog at {self.where} cannot be opened: {error.orig or error}") from None
        self.catalog.rollback()
        if self.indexed is None and not create:
            self.catalog.close()
            raise NoIndexError(self.where)
        self._given = encoder
        self._encoder: Encoder | None = None
        self._store: VectorStore | None = None
        # Said to the user when the model chosen is not the one they might expect.
        self.notice: str | None = None
        if encoder is not None:  # loaded already: check it against the index now
            try:
                _ = self.encoder
            except BaseException:
                self.catalog.close()
                raise

    @property
    def where(self) -> str:
        """The home, or the catalog's URL where it lives elsewhere (without its password)."""
        if not self.settings.catalog:
            return str(self.settings.home)
        return make_url(self.settings.catalog).render_as_string(hide_password=True)

    @property
    def encoder(self) -> Encoder:
        """The model for this library, loaded on first use and checked against the index."""
        if self._encoder is None:
            encoder, self.notice = (self._given, None) if self._given else choose_encoder(self.settings, self.indexed)
            identity = ModelIdentity.of(encoder, named=bool(self.settings.weights) or bool(
                self.indexed and self.indexed.weights_named))
            self.catalog.check_model(identity)
            self.identity = identity
            if self.indexed is not None:
                self.catalog.remember_weights(identity)
                self.catalog.commit()
            self._encoder = encoder
        return self._encoder

    @property
    def dim(self) -> int:
        return self.indexed.dim if self.indexed is not None else self.encoder.dim

    @property
    def store(self) -> VectorStore:
        if self._store is None:
            self._store = open_store(self.settings, self.dim)
        return self._store

    def disagreement(self) -> str | None:
        """A warning when the catalog and the vector store no longer hold the same windows (a
        count, not ``doctor``'s full check: cheap enough for every search)."""
        windows, vectors = self.catalog.window_count(), len(self.store)
        self.catalog.rollback()
        if windows == vectors:
            return None
        return (f"the catalog names {windows} windows but the vector store holds {vectors} vectors, so results "
                "may be missing; run `clapdex doctor` to see why and `clapdex doctor --fix` to repair")

    def close(self) -> None:
        self.catalog.close()
        if self._store is not None:
            self._store.close()

    def __enter__(self) -> Library:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def choose_encoder(settings: Settings, indexed: ModelIdentity | None = None) -> tuple[Encoder, str | None]:
    """The encoder for a library, and a notice for the user when it is not the one they might expect.

    The model named in ``settings``, else the one the index was built with (``indexed``), read
    from the weights named in ``settings``, else from where the index found them; for a new
    index MS-CLAP 2023, or, where its weights cannot be had and none were named, the compact
    model that ships with clapdex, so a fresh offline machine still works.
    """
    name = settings.model or (indexed.name if indexed else "")
    if name and name not in list_models():
        raise ConfigError(f"unknown model {name!r}; available: {', '.join(list_models())}")
    if settings.compile and (name or DEFAULT_MODEL) != DEFAULT_MODEL:
        raise ConfigError(f"compiling applies to {DEFAULT_MODEL} only; {name} is small enough as it is")
    options = {"batch_size": settings.batch_size or None} | ({"compiled": True} if settings.compile else {})
    weights = settings.weights or _indexed_weights(indexed, name)
    if name or weights:
        return load_encoder(name or DEFAULT_MODEL, weights=weights, device=settings.device, **options), None
    try:
        return load_encoder(DEFAULT_MODEL, device=settings.device, **options), None
    except MissingWeightsError as missing:
        log.debug("MS-CLAP 2023 weights not found: %s", missing)
        try:
            encoder = load_encoder(SHIPPED_MODEL, device=settings.device, batch_size=settings.batch_size or None)
        except MissingWeightsError:
            raise missing from None
    return encoder, (
        f"MS-CLAP 2023's weights are not on this machine, so this library uses {SHIPPED_MODEL}, the small model "
        f"that ships with clapdex; for MS-CLAP 2023, pass --weights CLAP_weights_2023.pth (see the README's "
        f"Weights) and --model {DEFAULT_MODEL} with a new --home."
    )


def _indexed_weights(indexed: ModelIdentity | None, name: str) -> str | None:
    """Where the index found its weights, if they are still there and are the model's own; None to
    look where the model looks by default (the Hugging Face cache, or inside clapdex)."""
    if indexed is None or not indexed.weights_path or name != indexed.name:
        return None
    if os.path.isfile(indexed.weights_path):
        return indexed.weights_path
    if indexed.weights_named:
        raise MissingWeightsError(
            f"this index was built with {indexed} from {indexed.weights_path}, which is not there any more; "
            "pass --weights PATH where the file is now (clapdex then remembers the new place)")
    return None
