"""What a query may be restricted to: one value object that every store and the catalog read.

The catalog turns it into SQL (for stores that search by allowed ids, like FAISS); a store
that keeps metadata beside its vectors (Qdrant) turns it into its own payload filter, so the
restriction is applied inside the vector search either way and a selective filter still
fills a page.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Filters:
    min_duration: float | None = None  # seconds, inclusive
    max_duration: float | None = None
    sample_rates: tuple[int, ...] = ()  # any of
    channels: tuple[int, ...] = ()  # any of
    formats: tuple[str, ...] = ()  # any of: file formats as the catalog names them ("wav", "flac", ...)
    folders: tuple[str, ...] = ()  # any of: absolute folders; files anywhere below them match
    tags: tuple[str, ...] = ()  # all of
    categories: tuple[str, ...] = ()  # any of: UCS categories ("DOOR", "DOORWood") as the catalog stores them
    suggested: bool = False  # categories also match what ``clapdex tag`` suggests best, or a person accepted

    def __bool__(self) -> bool:
        return dataclasses.replace(self, suggested=False) != Filters()

    @property
    def in_catalog_only(self) -> bool:
        """Whether only the catalog can apply these: suggestions are not in a store's payload."""
        return self.suggested and bool(self.categories)
