"""``clapdex doctor``: find every disagreement between catalog, vectors and disk, and repair it.

What counts as a disagreement, and how each is repaired, is ``indexer.consistency``'s; this
adds the disk (files gone or changed since they were indexed) and the embedding that
repairs leave to do.
"""

from __future__ import annotations

import dataclasses

from indexer.consistency import Findings, examine, repair
from indexer.pipeline import IndexReport, embed_pending, index_paths
from search.library import Library


@dataclasses.dataclass
class Checkup:
    findings: Findings  # as found, before any repair
    repaired: IndexReport | None = None  # the files embedded again by the repair; None unless fixed

    def as_json(self) -> dict:
        """What ``clapdex doctor --json`` prints: the findings as found, and what the repair did."""
        found = self.findings
        return {
            "healthy": found.healthy,
            "orphan_vectors": len(found.orphan_vectors), "orphan_windows": len(found.orphan_windows),
            "orphan_tags": found.orphan_tags, "waiting": found.waiting,
            "missing_vectors": found.files_missing_vectors, "indexed_without_windows": found.indexed_without_windows,
            "missing_on_disk": found.missing_on_disk, "changed_on_disk": found.changed_on_disk,
            "missing_folders": [dataclasses.asdict(folder) for folder in found.missing_folders],
            "repaired": None if self.repaired is None else {
                "indexed": self.repaired.indexed,
                "errors": [{"path": path, "reason": reason} for path, reason in self.repaired.errors]},
        }


def checkup(library: Library, fix: bool = False, show_progress: bool = False) -> Checkup:
    """Examine ``library`` (with the disk); with ``fix``, repair what was found and embed again
    what the repair sent back, reading files changed on disk afresh (hash, metadata)."""
    with library.reading() as catalog:
        findings = examine(catalog, library.store, full=True)
    if not (findings.repairable and fix):
        return Checkup(findings)
    repair(library.catalog, library.store, findings)
    library.store.save()
    library.catalog.commit()
    changed = findings.changed_on_disk
    # An index run of just the changed files embeds every pending file too.
    report = index_paths(library, changed, show_progress=show_progress) if changed \
        else embed_pending(library, show_progress=show_progress)
    return Checkup(findings, report)
