"""Writing the index: finding audio files, embedding their windows, storing catalog and vectors."""

from indexer.pipeline import IndexReport, index_paths
from indexer.scan import AUDIO_EXTENSIONS, scan

__all__ = ["AUDIO_EXTENSIONS", "IndexReport", "index_paths", "scan"]
