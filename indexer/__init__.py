"""Writing the index: finding audio files, embedding their windows, storing catalog and vectors."""

from indexer.pipeline import IndexReport, index_paths
from indexer.scan import scan

__all__ = ["IndexReport", "index_paths", "scan"]
