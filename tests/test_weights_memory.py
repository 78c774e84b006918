"""An index remembers where its weights are and finds them again, or says where they went."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from checkpoints import write_tiny_msclap_checkpoint
from sounds import sox_tone

CLAPDEX = Path(sys.executable).with_name("clapdex")


def clapdex(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    for name in ("CLAPDEX_WEIGHTS", "CLAPDEX_MODEL"):
        env.pop(name, None)
    return subprocess.run([str(CLAPDEX), "--home", str(home), "--device", "cpu", *args], capture_output=True,
                          text=True, env=env, timeout=300)


def test_an_index_finds_its_weights_again_and_says_where_they_went(tmp_path, tiny_weights):
    library = tmp_path / "library"
    library.mkdir()
    sox_tone(library / "tone.wav", 2)
    first = tmp_path / "first"
    shutil.copytree(tiny_weights.parent, first)
    home = tmp_path / "home"
    assert clapdex(home, "--weights", str(first / tiny_weights.name), "index", str(library)).returncode == 0

    found = clapdex(home, "search", "a tone", "--json")  # no --weights: the index knows where they are
    assert found.returncode == 0, found.stderr
    assert [hit["path"] for hit in json.loads(found.stdout)] == [str(library / "tone.wav")]
    assert f"from {first / tiny_weights.name}" in clapdex(home, "status").stdout

    second = tmp_path / "second"
    first.rename(second)
    lost = clapdex(home, "search", "a tone")
    assert lost.returncode == 3 and lost.stderr.count("\n") == 1
    assert f"from {first / tiny_weights.name}, which is not there any more; pass --weights PATH" in lost.stderr

    pointed = clapdex(home, "--weights", str(second / tiny_weights.name), "search", "a tone", "--json")
    assert pointed.returncode == 0, pointed.stderr
    assert clapdex(home, "search", "a tone", "--json").stdout == pointed.stdout  # the new place is remembered
    assert f"from {second / tiny_weights.name}" in clapdex(home, "status").stdout

    write_tiny_msclap_checkpoint(second, seed=1)  # other weights under the same name
    changed = clapdex(home, "search", "a tone")
    assert changed.returncode == 3 and "the file has changed since" in changed.stderr


def test_a_library_built_with_trained_weights_is_searched_without_naming_them(tmp_path):
    """The compact model's own checkpoint format, as `clapdex train` writes it, other weights than
    the shipped ones (which a search that ignored the index's record would load instead)."""
    import torch

    from encoders.compact import PACKAGED_WEIGHTS, read_compact, save_compact

    model, _ = read_compact(PACKAGED_WEIGHTS)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(1.01)
    weights = save_compact(model, tmp_path / "runs" / "mine.safetensors")
    library = tmp_path / "library"
    library.mkdir()
    sox_tone(library / "tone.wav", 2)
    home = tmp_path / "home"
    built = clapdex(home, "--model", "clapdex-compact", "--weights", str(weights), "index", str(library))
    assert built.returncode == 0, built.stderr

    found = clapdex(home, "search", "a steady tone", "--json")
    assert found.returncode == 0, found.stderr
    assert [hit["path"] for hit in json.loads(found.stdout)] == [str(library / "tone.wav")]
