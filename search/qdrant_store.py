"""Window vectors in Qdrant, with each file's metadata as the points' payload.

``qdrant://host:6333[/collection]`` talks to a server (docker-compose.yml runs one, or a
cluster of three); ``qdrant+local:///path[#collection]`` keeps the collection in a folder
through qdrant-client's local mode (tests, single machines). Either takes the layout of the
collection it makes as query options, ``?shards=6&replicas=2&write_consistency=2``
(``LAYOUT_OPTIONS``); local mode accepts and ignores them. Everything but the client's
construction is the same for both.

Keeping metadata beside the vectors lets a filtered query be answered by Qdrant alone: the
``Filters`` become a payload filter applied inside the vector search. Qdrant writes each
change as it is made, so ``save`` has nothing to do; the index run's repair step keeps the
catalog and the points in agreement after a crash, as for FAISS.
"""

from __future__ import annotations

import dataclasses
import os
import re
import urllib.parse
from pathlib import Path

import numpy as np

from search.catalog import File, ucs_filter_values
from search.config import ConfigError
from search.filters import Filters
from search.store import VectorStore

DEFAULT_COLLECTION = "clapdex"
_UPSERT_BATCH = 256
_SCROLL_PAGE = 10_000


# The store URL's query options: how a new collection is laid out over a Qdrant cluster, as
# create_collection's keyword arguments name them.
LAYOUT_OPTIONS = {"shards": "shard_number", "replicas": "replication_factor",
                  "write_consistency": "write_consistency_factor"}


@dataclasses.dataclass(frozen=True)
class QdrantURL:
    """What a ``--store`` URL names: the QdrantClient's keyword arguments, the collection, and the
    layout (create_collection's shard_number, replication_factor, write_consistency_factor: only
    those the URL gives) of a collection made for it."""

    client: dict
    collection: str
    layout: dict


def parse_qdrant_url(url: str) -> QdrantURL:
    """``url`` taken apart; a ConfigError says in one line what is wrong with it."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme == "qdrant":
        if not parsed.hostname:
            raise ConfigError("a qdrant:// URL names its server; e.g. qdrant://127.0.0.1:6333")
        try:
            port = 6333 if parsed.port is None else parsed.port
        except ValueError:
            port = 0
        if not 1 <= port <= 65535:
            raise ConfigError("the port of a qdrant:// URL is a number from 1 to 65535")
        client, collection = {"host": parsed.hostname, "port": port}, parsed.path.strip("/") or DEFAULT_COLLECTION
    elif parsed.scheme == "qdrant+local":
        if not parsed.path:
            raise ConfigError("a qdrant+local:// URL names its folder; e.g. qdrant+local:///srv/clapdex/qdrant")
        client, collection = {"path": parsed.path}, parsed.fragment or DEFAULT_COLLECTION
    else:
        raise ConfigError(f"not a Qdrant store URL: {url!r}")
    return QdrantURL(client, collection, _layout(parsed.query))


def _layout(query: str) -> dict:
    layout: dict[str, int] = {}
    try:
        options = urllib.parse.parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise ConfigError(f"store URL options {query!r} are not NAME=VALUE pairs joined by &") from None
    known = ", ".join(LAYOUT_OPTIONS)
    for name, value in options:
        if name not in LAYOUT_OPTIONS:
            raise ConfigError(f"store URL option {name!r} is unknown; known: {known}")
        if LAYOUT_OPTIONS[name] in layout:
            raise ConfigError(f"store URL option {name!r} is given twice")
        if not re.fullmatch(r"-?[0-9]+", value):  # int() would also take "1_0", " 2" and other digits
            raise ConfigError(f"store URL option {name}={value!r} is not a whole number")
        number = int(value)
        if number < 1:
            raise ConfigError(f"store URL option {name}={value} is below 1")
        layout[LAYOUT_OPTIONS[name]] = number
    consistency, replicas = layout.get("write_consistency_factor"), layout.get("replication_factor")
    if consistency is not None and consistency > (replicas or 1):
        # More copies would have to confirm each write than the collection keeps.
        raise ConfigError(f"store URL option write_consistency={consistency} is more than "
                          + (f"replicas={replicas}" if replicas else "the one copy kept without a replicas option"))
    return layout


def layout_differences(params, layout: dict) -> list[str]:
    """The URL's ``layout`` options that the collection's ``params`` (get_collection's
    config.params) contradict, as "option=URL's value (the collection has N)". Local mode
    reports no layout (None): nothing to contradict."""
    names = {argument: option for option, argument in LAYOUT_OPTIONS.items()}
    return [f"{names[argument]}={wanted} (the collection has {getattr(params, argument)})"
            for argument, wanted in layout.items()
            if getattr(params, argument) is not None and getattr(params, argument) != wanted]


def drop_collection(url: str) -> None:
    """Delete the collection a ``--store`` URL names, with every vector in it."""
    from qdrant_client import QdrantClient

    target = parse_qdrant_url(url)
    client = QdrantClient(**target.client)
    try:
        if client.collection_exists(target.collection):
            client.delete_collection(target.collection)
    finally:
        client.close()


class QdrantStore(VectorStore):
    """Cosine search over unit vectors keyed by window id; payload: the window's file's metadata."""

    keeps_payload = True

    def __init__(self, url: str, dim: int):
        from qdrant_client import QdrantClient, models

        self.models = models
        # Every write waits (wait=True) until write_consistency_factor replicas of its shard hold
        # it, so what the catalog records as stored is stored. MEDIUM sends each shard's writes
        # through its elected leader, so all replicas apply them in one order: an index run and a
        # rename writing the same points cannot leave replicas disagreeing. (STRONG would stop
        # writes while the permanent leader is down; WEAK, Qdrant's default, may reorder them.)
        self.ordering = models.WriteOrdering.MEDIUM
        target = parse_qdrant_url(url)
        self.collection, self.layout = target.collection, target.layout
        if "path" in target.client:
            Path(target.client["path"]).mkdir(parents=True, exist_ok=True)
        self.client = QdrantClient(**target.client)
        self.dim = dim
        try:
            self._open_or_create(local="path" in target.client)
        except BaseException:
            self.client.close()  # local mode: the folder stays locked while a client holds it
            raise

    def _open_or_create(self, local: bool) -> None:
        if self.client.collection_exists(self.collection):
            params = self.client.get_collection(self.collection).config.params
            if params.vectors.size != self.dim:
                raise ConfigError(
                    f"Qdrant collection {self.collection!r} holds {params.vectors.size}-dim vectors, not {self.dim}"
                )
            # The layout is the collection's from its making on; a URL asking for another one is
            # refused rather than ignored, so no one believes in replicas that do not exist.
            differences = layout_differences(params, self.layout)
            if differences:
                raise ConfigError(
                    f"Qdrant collection {self.collection!r} was made with another layout than the store URL asks: "
                    f"{', '.join(differences)}; leave those options out of the URL to use it as it is"
                )
        else:
            self.client.create_collection(self.collection, **self.creation())
            if not local:  # local mode scans everything anyway; a server indexes payload
                for field, schema in _payload_indexes().items():
                    self.client.create_payload_index(self.collection, field, field_schema=schema)

    def creation(self) -> dict:
        """create_collection's keyword arguments for this store's collection: cosine over
        ``dim`` floats, laid out as the URL asks (a server given no layout uses its own defaults)."""
        return {
            "vectors_config": self.models.VectorParams(size=self.dim, distance=self.models.Distance.COSINE),
            **self.layout,
        }

    def close(self) -> None:
        self.client.close()

    def __len__(self) -> int:
        return self.client.count(self.collection, exact=True).count

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        vectors = np.asarray(vectors, dtype=np.float32).reshape(-1, self.dim)
        ids = [int(i) for i in ids]
        for offset in range(0, len(ids), _UPSERT_BATCH):
            points = [
                self.models.PointStruct(id=point_id, vector=vector.tolist(), payload={})
                for point_id, vector in zip(ids[offset : offset + _UPSERT_BATCH], vectors[offset : offset + _UPSERT_BATCH])
            ]
            self.client.upsert(self.collection, points=points, wait=True, ordering=self.ordering)

    def set_payload(self, ids: np.ndarray, record: File) -> None:
        """Describe the windows ``ids`` by their file ``record`` (after it is stored or moved)."""
        if len(ids):
            self.client.overwrite_payload(
                self.collection, payload=payload_of(record), points=[int(i) for i in ids], wait=True,
                ordering=self.ordering,
            )

    def remove(self, ids: np.ndarray) -> int:
        ids = [int(i) for i in ids]
        if not ids:
            return 0
        present = len(self.client.retrieve(self.collection, ids=ids, with_payload=False, with_vectors=False))
        self.client.delete(
            self.collection, points_selector=self.models.PointIdsList(points=ids), wait=True, ordering=self.ordering
        )
        return present

    def search(
        self, queries: np.ndarray, k: int, allowed_ids: np.ndarray | None = None, filters: Filters | None = None,
        exact: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Cosine scores and ids, (len(queries), n), best first; ``allowed_ids`` and ``filters``
        both restrict the search inside Qdrant, which scores every hit exactly (``exact``
        changes nothing)."""
        queries = np.asarray(queries, dtype=np.float32).reshape(-1, self.dim)
        conditions = payload_filter(filters or Filters(), self.models)
        if allowed_ids is not None:
            conditions.must.append(self.models.HasIdCondition(has_id=[int(i) for i in allowed_ids]))
            if not len(allowed_ids):
                return np.empty((len(queries), 0), np.float32), np.empty((len(queries), 0), np.int64)
        rows = [
            self.client.query_points(
                self.collection, query=query.tolist(), limit=max(k, 1), query_filter=conditions if conditions.must else None
            ).points if k > 0 else []
            for query in queries
        ]
        width = min(len(row) for row in rows) if rows else 0
        scores = np.array([[point.score for point in row[:width]] for row in rows], dtype=np.float32)
        ids = np.array([[point.id for point in row[:width]] for row in rows], dtype=np.int64)
        return scores.reshape(len(rows), width), ids.reshape(len(rows), width)

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        ids = [int(i) for i in ids]
        if not ids:
            return np.empty((0, self.dim), np.float32)
        found = {point.id: point.vector for point in self.client.retrieve(self.collection, ids=ids, with_vectors=True)}
        return np.array([found[i] for i in ids], dtype=np.float32)

    def payload(self, point_id: int) -> dict:
        points = self.client.retrieve(self.collection, ids=[int(point_id)], with_payload=True)
        return points[0].payload if points else {}

    def ids(self) -> np.ndarray:
        found: list[int] = []
        offset = None
        while True:
            points, offset = self.client.scroll(
                self.collection, limit=_SCROLL_PAGE, offset=offset, with_payload=False, with_vectors=False
            )
            found.extend(point.id for point in points)
            if offset is None:
                return np.array(sorted(found), dtype=np.int64)

    def save(self) -> None:
        """Nothing to do: Qdrant has written every change already."""


def payload_of(record: File) -> dict:
    folders, folder = [], Path(record.folder)
    for parent in (folder, *folder.parents):
        folders.append(str(parent))
    return {
        "file_id": record.id, "path": record.path, "name": record.name, "folders": folders,
        "format": record.format, "duration": record.duration, "sample_rate": record.sample_rate,
        "channels": record.channels, "tags": record.tags,
        "categories": [value for value in (record.ucs_category, record.ucs_cat_id) if value],
    }


def payload_filter(filters: Filters, models=None):
    """``filters`` as a Qdrant payload filter on ``payload_of``'s fields (``must`` empty: none)."""
    if models is None:
        from qdrant_client import models
    must = []
    if filters.min_duration is not None or filters.max_duration is not None:
        must.append(models.FieldCondition(
            key="duration", range=models.Range(gte=filters.min_duration, lte=filters.max_duration)
        ))
    for key, values in (("sample_rate", [int(v) for v in filters.sample_rates]),
                        ("channels", [int(v) for v in filters.channels]),
                        ("format", [v.lower() for v in filters.formats]),
                        ("folders", [os.path.abspath(v).rstrip(os.sep) or os.sep for v in filters.folders]),
                        ("categories", [value for found in ucs_filter_values(filters.categories) for value in found])):
        if values:
            must.append(models.FieldCondition(key=key, match=models.MatchAny(any=values)))
    for tag in filters.tags:  # all of them
        must.append(models.FieldCondition(key="tags", match=models.MatchValue(value=tag.strip().lower())))
    return models.Filter(must=must)


def _payload_indexes():
    from qdrant_client import models

    return {
        "folders": models.PayloadSchemaType.KEYWORD, "format": models.PayloadSchemaType.KEYWORD,
        "tags": models.PayloadSchemaType.KEYWORD, "categories": models.PayloadSchemaType.KEYWORD,
        "sample_rate": models.PayloadSchemaType.INTEGER, "channels": models.PayloadSchemaType.INTEGER,
        "duration": models.PayloadSchemaType.FLOAT,
    }
