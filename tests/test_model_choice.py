"""Which model a library uses when the user names none: the index's own, else MS-CLAP 2023,
else (no weights to be had) the compact model that ships with clapdex."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sounds import sox_tone

from encoders import MissingWeightsError
from search.config import ConfigError, load_settings
from search.library import choose_encoder

CLAPDEX = Path(sys.executable).with_name("clapdex")


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """No MS-CLAP weights anywhere: an empty Hugging Face cache and no network."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("CLAPDEX_WEIGHTS", raising=False)
    monkeypatch.delenv("CLAPDEX_MODEL", raising=False)
    return dict(os.environ)


def test_a_new_library_without_msclap_weights_uses_the_shipped_model(tmp_path, offline):
    encoder, notice = choose_encoder(load_settings(tmp_path / "home", device="cpu"))
    assert encoder.name == "clapdex-compact"
    assert "ships with clapdex" in notice and "--model msclap-2023" in notice and "\n" not in notice


def test_named_weights_are_never_swapped_for_another_model(tmp_path, offline):
    settings = load_settings(tmp_path / "home", device="cpu", weights=str(tmp_path / "CLAP_weights_2023.pth"))
    with pytest.raises(MissingWeightsError):
        choose_encoder(settings)


def test_compile_and_batch_size_reach_msclap_and_compile_is_refused_for_the_compact_model(tmp_path, offline,
                                                                                       tiny_weights):
    home = tmp_path / "home"
    encoder, _ = choose_encoder(load_settings(home, device="cpu", weights=str(tiny_weights), compile=True, batch_size=3))
    assert encoder.name == "msclap-2023" and encoder.compiled and encoder.batch_size == 3
    with pytest.raises(ConfigError, match="compiling applies to msclap-2023 only"):
        choose_encoder(load_settings(home, device="cpu", model="clapdex-compact", compile=True))


def test_a_library_keeps_the_model_it_was_built_with(tmp_path, offline, tiny_weights):
    library = tmp_path / "library"
    library.mkdir()
    sox_tone(library / "tone.wav", 2)
    home = str(tmp_path / "home")

    def clapdex(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(CLAPDEX), "--home", home, "--device", "cpu", *args], env=offline,
                              capture_output=True, text=True, timeout=300)

    built = clapdex("index", str(library))
    assert built.returncode == 0, built.stderr
    assert "clapdex-compact, the small model that ships with clapdex" in built.stderr

    found = clapdex("search", "a steady tone", "--json")
    assert found.returncode == 0, found.stderr
    assert [hit["path"] for hit in json.loads(found.stdout)] == [str(library / "tone.wav")]
    assert "ships with clapdex" not in found.stderr  # the index named its model: nothing to explain

    refused = clapdex("--model", "msclap-2023", "--weights", str(tiny_weights), "search", "a steady tone")
    assert refused.returncode == 3 and "clapdex-compact" in refused.stderr


def test_without_hugging_face_a_new_library_says_so_in_one_line_without_retrying(tmp_path):
    """Offline mode not set, the hub unreachable (a name that never resolves): clapdex learns
    it from one connection attempt, says which model it uses, and indexes."""
    library = tmp_path / "library"
    library.mkdir()
    sox_tone(library / "tone.wav", 2)
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_ENDPOINT": "https://hub.clapdex-test.invalid"}
    for name in ("HF_HUB_OFFLINE", "CLAPDEX_WEIGHTS", "CLAPDEX_MODEL"):
        env.pop(name, None)

    result = subprocess.run([str(CLAPDEX), "--home", str(tmp_path / "home"), "--device", "cpu", "index", str(library)],
                            env=env, capture_output=True, text=True, timeout=300)

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("1 indexed")
    notices = [line for line in result.stderr.splitlines() if line.startswith("clapdex: ")]
    assert len(notices) == 1 and "uses clapdex-compact" in notices[0] and "--weights" in notices[0]
    assert "Retry" not in result.stderr and "Traceback" not in result.stderr and "hub.clapdex-test" not in result.stderr
