"""The rooms and the way the data flows between them: no import runs backwards
(docs/architecture.md)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Each package, and those of ours it may import.
ALLOWED = {
    "encoders": set(),
    "training": {"encoders"},
    "search": {"encoders"},
    "indexer": {"encoders", "search"},
    "server": {"encoders", "search"},
    "ui": {"encoders", "search", "server"},
    "clapdex": {"encoders", "search", "indexer", "server", "ui", "training"},
}


def imported_packages(package: str) -> dict[str, set[str]]:
    """Package of ours -> the files of ``package`` that import it."""
    found: dict[str, set[str]] = {}
    for source in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else []
            for name in names:
                top = name.split(".")[0]
                if top in ALLOWED and top != package:
                    found.setdefault(top, set()).add(str(source.relative_to(ROOT)))
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_follow_the_data_flow(package):
    backwards = {other: files for other, files in imported_packages(package).items() if other not in ALLOWED[package]}
    assert not backwards, f"{package} imports {backwards}"


def test_a_query_and_an_index_run_load_no_training_code():
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, clapdex.cli, search.engine, indexer.pipeline, indexer.doctor, ui.results; "
                               "print(sorted(name for name in sys.modules if name.split('.')[0] == 'training'))"],
        capture_output=True, text=True, check=True, cwd=ROOT,
    )
    assert loaded.stdout.strip() == "[]"
