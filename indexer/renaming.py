"""Rename plans: the tagger's suggestions turned into UCS file names, and their careful execution.

``export_plan`` writes a CSV a person reads and edits: one row per tagged file whose own name
carries no UCS CatID (or whose accepted CatID differs from it), with the suggested name.
``apply_plan`` renames exactly the rows of a plan, in place (same folder), never over an
existing file, re-points the catalog (windows and vectors stay: nothing is embedded again),
and writes an undo log, itself a plan, that ``apply_plan`` runs backwards.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import datetime
import errno
import logging
import os
import re
from pathlib import Path

import numpy as np

from indexer.metadata import parse_ucs_name
from search.library import Library

log = logging.getLogger(__name__)

PLAN_COLUMNS = ("path", "new_name", "cat_id", "confidence")
REQUIRED_COLUMNS = ("path", "new_name")
# What a UCS block may not hold: "_" separates the blocks; path separators and control characters never.
_NOT_IN_BLOCK = re.compile(r"[_/\\\x00-\x1f]+")


class PlanError(ValueError):
    """A plan that cannot be read or run as a whole (its rows' own problems are reported, not raised)."""


@dataclasses.dataclass
class ApplyReport:
    renamed: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (old path, new path)
    skipped: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (path, why)
    undo_log: str | None = None


def block(text: str) -> str:
    """``text`` as one block of a UCS name: no underscores, separators or control characters."""
    return " ".join(_NOT_IN_BLOCK.sub(" ", text).split())


def ucs_name(path: str, cat_id: str, creator: str, source: str) -> str:
    """The UCS name ``path`` would have under ``cat_id``: a UCS name keeps its other blocks;
    any other name becomes the FXName, with ``creator`` and ``source``."""
    name = Path(path)
    parts = parse_ucs_name(name.name)
    if parts is not None:
        rest = name.stem.split("_", 1)[1]
        return f"{cat_id}_{rest}{name.suffix}"
    return f"{cat_id}_{block(name.stem) or 'Untitled'}_{block(creator)}_{block(source)}{name.suffix}"


def export_plan(library: Library, plan: str, *, min_confidence: float = 0.0, creator: str = "Unknown",
                source: str | None = None) -> int:
    """Write the rename plan to ``plan``; returns its rows. ``source``: the SourceID (default:
    each file's library folder's name)."""
    catalog = library.catalog
    files = catalog.tagged_files()
    suggestions = catalog.suggestions_of(file_id for file_id, _, _ in files)
    roots = {file_id: record.root for file_id, record in catalog.files_by_id(f for f, _, _ in files).items()}
    rows = []
    for file_id, path, own in files:
        found = suggestions[file_id]
        if found.accepted:
            cat_id, confidence = found.accepted, "accepted"
        elif found.ucs and not own and found.ucs[0][1] >= min_confidence:
            cat_id, confidence = found.ucs[0][0], f"{found.ucs[0][1]:.3f}"
        else:
            continue
        if cat_id == own:
            continue
        new_name = ucs_name(path, cat_id, creator, source or Path(roots[file_id]).name)
        rows.append((path, new_name, cat_id, confidence))
    with open(plan, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(PLAN_COLUMNS)
        writer.writerows(rows)
    return len(rows)


def read_plan(plan: str) -> list[tuple[str, str]]:
    """(path, new name) of each row of ``plan``; PlanError naming what is wrong with it."""
    try:
        with open(plan, newline="", encoding="utf-8") as file:
            reader = csv.DictReader(file)
            missing = [column for column in REQUIRED_COLUMNS if column not in (reader.fieldnames or ())]
            if missing:
                raise PlanError(f"{plan} has no {' or '.join(missing)} column (a plan's columns: "
                                f"{', '.join(PLAN_COLUMNS)})")
            rows = [((row["path"] or "").strip(), (row["new_name"] or "").strip()) for row in reader]
    except FileNotFoundError:
        raise PlanError(f"no such plan: {plan}") from None
    except (UnicodeDecodeError, csv.Error) as error:
        raise PlanError(f"{plan} is not a CSV plan: {error}") from None
    return rows


def apply_plan(library: Library, plan: str, *, undo_log: str | None = None) -> ApplyReport:
    """Rename the files ``plan`` lists. Each row is checked on its own; a row that cannot be done
    (not catalogued, gone, a name with a folder in it, a name taken) is skipped and reported.
    ``undo_log``: where to write the renames done, as a plan that undoes them (None: none);
    each rename is in it as soon as it is done, so a run stopped midway can be undone too."""
    rows = read_plan(plan)
    report = ApplyReport()
    catalog = library.catalog
    with contextlib.ExitStack() as closing:
        undo = None
        for path, new_name in rows:
            path = os.path.abspath(path) if path else path
            why = _refusal(path, new_name)
            record = catalog.file(path) if why is None else None
            if why is None and record is None:
                why = "not in the catalog"
            if why is not None:
                report.skipped.append((path, why))
                continue
            target = os.path.join(os.path.dirname(path), new_name)
            try:
                _rename_without_overwriting(path, target)
            except FileExistsError:
                report.skipped.append((path, f"{new_name} exists already; nothing overwritten"))
                continue
            except OSError as error:
                report.skipped.append((path, f"cannot rename: {error.strerror or error}"))
                continue
            catalog.move_file(record, target, root=record.root, mtime=os.stat(target).st_mtime)
            _name_says(catalog, record, target)
            catalog.commit()  # each rename kept with its catalog row: a killed run leaves them agreeing
            if library.store.keeps_payload and record.windows:
                library.store.set_payload(np.array([window.id for window in record.windows], dtype=np.int64), record)
            report.renamed.append((path, target))
            if undo_log is not None:
                if undo is None:
                    file = closing.enter_context(open(undo_log, "x", newline="", encoding="utf-8"))
                    undo = csv.writer(file)
                    undo.writerow(PLAN_COLUMNS)
                    report.undo_log = undo_log
                undo.writerow((target, os.path.basename(path), "", "undo"))
                file.flush()
    if report.renamed and library.store.keeps_payload:
        library.store.save()
    return report


def default_undo_log(plan: str) -> str:
    """Beside the plan, named by the moment: never over an older log."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    return str(Path(plan).with_name(f"{Path(plan).stem}.undo-{stamp}.csv"))


def _refusal(path: str, new_name: str) -> str | None:
    if not path or not new_name:
        return "a row needs both a path and a new_name"
    if new_name in (".", "..") or os.sep in new_name or (os.altsep and os.altsep in new_name) or "\0" in new_name:
        return f"new_name {new_name!r} must be a file name, not a path (renames stay in their folder)"
    if not os.path.isfile(path):
        return "no such file"
    if os.path.basename(path) == new_name:
        return "already so named"
    return None


def _rename_without_overwriting(source: str, target: str) -> None:
    """A hard link then an unlink: the link fails if ``target`` exists, with no window between a
    check and the rename for another file to appear. Where links are refused (some network and
    FAT volumes), a checked rename."""
    try:
        os.link(source, target)
    except FileExistsError:
        raise
    except OSError as error:
        if error.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV, errno.EMLINK, errno.ENOSYS):
            raise
        if os.path.lexists(target):
            raise FileExistsError(target) from None
        os.rename(source, target)
        return
    os.unlink(source)


def _name_says(catalog, record, path: str) -> None:
    """The UCS columns as the new name says them (the rest of the metadata stays)."""
    parts = parse_ucs_name(os.path.basename(path))
    if parts is None:
        record.ucs_cat_id = record.ucs_category = record.ucs_subcategory = None
    else:
        record.ucs_cat_id, record.ucs_category, record.ucs_subcategory = (
            parts["cat_id"], parts["category"], parts["subcategory"])
    catalog.flush()
