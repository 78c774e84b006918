"""What the library holds (status, facets, duplicates): a pass over every file, computed again
only once an index run has changed the catalog, as the page asks for it on every click."""

from __future__ import annotations

import shutil

from sounds import sox_tone
from libraries import index_into

from search.catalog import Catalog
from search.config import load_settings
from search.library import Library


def test_status_facets_and_duplicates_are_kept_until_an_index_run_changes_the_catalog(tmp_path, tiny_encoder,
                                                                                       monkeypatch):
    root = tmp_path / "library"
    root.mkdir()
    sox_tone(root / "tone.wav", 1)
    (root / "broken.wav").write_bytes(b"")  # recorded as unreadable by every run, unchanged
    settings = load_settings(tmp_path / "home")
    index_into(settings, [root], tiny_encoder)
    passes = []
    for name in ("facets", "counts", "exact_duplicates"):
        original = getattr(Catalog, name)
        monkeypatch.setattr(Catalog, name, lambda catalog, _original=original, _name=name:
                            passes.append(_name) or _original(catalog))

    with Library(settings) as library:  # open all along, as the page's is
        before = [library.facets(), library.status(), library.exact_duplicates()]
        again = [library.facets(), library.status(), library.exact_duplicates()]
        assert sorted(passes) == ["counts", "exact_duplicates", "facets"]
        assert before[0].formats == ["wav"] and before[1].indexed == 1 and before[2] == []
        assert again == before

        index_into(settings, [root], tiny_encoder)  # nothing changed on disk: nothing to compute again
        assert library.facets() == before[0] and len(passes) == 3

        (root / "sub").mkdir()
        sox_tone(root / "sub" / "stereo.flac", 2, channels=2)
        shutil.copyfile(root / "tone.wav", root / "copy.wav")
        index_into(settings, [root], tiny_encoder)
        after = [library.facets(), library.status(), library.exact_duplicates()]
        assert after[0].formats == ["flac", "wav"] and after[0].channels == [1, 2]
        assert after[1].indexed == 3
        assert after[2] == [[str(root / "copy.wav"), str(root / "tone.wav")]]
        assert len(passes) == 6


def test_the_views_first_reads_are_computed_ahead_once_and_joined_once(tmp_path, tiny_encoder, monkeypatch):
    root = tmp_path / "library"
    root.mkdir()
    sox_tone(root / "tone.wav", 1)
    shutil.copyfile(root / "tone.wav", root / "copy.wav")
    settings = load_settings(tmp_path / "home")
    index_into(settings, [root], tiny_encoder)
    passes = []
    for name in ("counts", "exact_duplicates"):
        original = getattr(Catalog, name)
        monkeypatch.setattr(Catalog, name, lambda catalog, _original=original, _name=name:
                            passes.append(_name) or _original(catalog))

    with Library(settings) as library:
        library.warm().join(timeout=60)
        assert sorted(passes) == ["counts", "exact_duplicates"]
        listed = library.duplicate_groups()
        assert library.status().indexed == 2 and len(passes) == 2  # kept by the thread, not computed again
        assert listed.groups == [("identical", [str(root / "copy.wav"), str(root / "tone.wav")])]
        assert listed.near.pairs is None and not listed.near.current
        assert library.duplicate_groups() is listed

        shutil.copyfile(root / "tone.wav", root / "third.wav")
        index_into(settings, [root], tiny_encoder)
        assert library.duplicate_groups().groups == [
            ("identical", [str(root / "copy.wav"), str(root / "third.wav"), str(root / "tone.wav")])]
