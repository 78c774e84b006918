"""Fine-tuning: manifests (CSV and JSONL), library captions, msclap-2023 with frozen towers, and
``clapdex train`` end to end (train, index with the result, search), on CPU with tiny models."""

import json

import numpy as np
import pytest
import torch

from sounds import append_riff_chunks, bext_chunk, sox_tone, tagged

from clapdex.cli import main as clapdex
from encoders import load_encoder
from training.data import read_shards
from training.pack import pack_manifest, read_manifest
from training.train import TrainConfig, train
from search.catalog import Catalog, File, FileTag
from test_training import SOUNDS
from test_training import manifest as msclap_manifest  # noqa: F401  (twelve sox clips, four captions)

AUDIO_KEYS, TEXT_KEYS = ("audio_encoder.",), ("caption_encoder.",)


def official_state(path):
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def changed_keys(before, after, prefixes):
    assert before.keys() == after.keys()  # the official layout, key for key
    return [key for key in before if key.startswith(prefixes) and not torch.equal(before[key], after[key])]


def test_manifest_rows_crops_and_bad_rows(tmp_path, caplog):
    (tmp_path / "clips").mkdir()
    short = sox_tone(tmp_path / "clips" / "short.wav", 2.0, rate=44100)
    long = sox_tone(tmp_path / "long.flac", 3.0, rate=48000, tone="square 220")
    (tmp_path / "clips" / "broken.wav").write_bytes(b"RIFF....WAVEfmt not audio at all")
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(
        "audio,caption,start,end\n"
        "clips/short.wav,a tone,,\n"                     # relative to the manifest, whole file
        f"{long},a buzz: the middle second,0.5,1.5\n"    # absolute, cropped
        f"{long},a buzz from 2 s,2.0,\n"                 # to the end
        "clips/short.wav,,,\n"                           # no caption
        "clips/short.wav,backwards,1.5,0.5\n"            # empty span
        "clips/short.wav,not seconds,soon,\n"
        "clips/missing.wav,a file that is not there,,\n"
        "clips/broken.wav,a file that is not audio,,\n")
    caplog.set_level("WARNING")
    pack_manifest(manifest, tmp_path / "shards", sample_rate=16000)
    clips = read_shards(tmp_path / "shards")
    assert list(clips.captions) == ["a tone", "a buzz: the middle second", "a buzz from 2 s"]
    assert clips.lengths.tolist() == [32000, 16000, 16000]
    warnings = caplog.text
    for line in (5, 6, 7):
        assert f"manifest.csv line {line} skipped" in warnings
    assert "missing.wav" in warnings and "broken.wav" in warnings

    jsonl = tmp_path / "manifest.jsonl"
    jsonl.write_text(json.dumps({"audio": "clips/short.wav", "caption": "a tone", "end": 1}) + "\n{not json\n\n"
                     + json.dumps(["a", "list"]) + "\n")
    rows = read_manifest(jsonl)
    assert [(row.audio, row.caption, row.start, row.end) for row in rows] == [(short, "a tone", 0.0, 1.0)]
    assert "manifest.jsonl line 2 skipped: not JSON" in caplog.text and "manifest.jsonl line 4 skipped" in caplog.text


def test_library_captions_read_like_descriptions():
    from indexer.captions import caption_for, library_rows

    def file(path, root="/lib", **fields):
        folder, name = path.rsplit("/", 1)
        tags = fields.pop("tags", [])
        record = File(path=path, root=root, folder=folder, name=name, **fields)
        record.tag_rows = [FileTag(tag=tag) for tag in tags]
        return record

    door = file("/lib/Doors/DOORWood_Creak Open Slow_JD_Lib.wav", ucs_category="DOOR", ucs_subcategory="Wood",
                title="Creak Open Slow", extra=json.dumps({"ucs:fx_name": "Creak Open Slow"}))
    assert caption_for(door) == "door, wood: creak open slow"
    ambience = file("/lib/City/AMBUrbn_Night Traffic_JD_Lib.wav", ucs_category="AMB", ucs_subcategory="Urbn",
                    extra=json.dumps({"ucs:fx_name": "Night Traffic"}), description="Distant cars, light rain.")
    assert caption_for(ambience) == "ambience, urbn: night traffic; distant cars, light rain (city)"
    rain = file("/lib/rain/RainOnRoof_Heavy_take2_48kHz_v2.wav", description="Heavy rain on a tin roof")
    assert caption_for(rain) == "rain on roof heavy; heavy rain on a tin roof"
    chirp = file("/lib/Field Recordings/birdChirp-03.mp3", tags=["nature", "bird", "morning"])
    assert caption_for(chirp) == "bird chirp (field recordings, nature, morning)"
    assert caption_for(file("/lib/0001_final.wav")) == ""
    assert library_rows(file("/lib/x.wav", duration=25.0), "x") == [
        {"audio": "/lib/x.wav", "caption": "x", "start": 0.0, "end": 10.0},
        {"audio": "/lib/x.wav", "caption": "x", "start": 10.0, "end": 20.0},
        {"audio": "/lib/x.wav", "caption": "x", "start": 20.0, "end": 25.0}]


def test_msclap_fine_tuning_with_the_audio_tower_frozen(msclap_manifest, tiny_weights, tmp_path):
    out = tmp_path / "run"
    record = train(TrainConfig(out=str(out), manifest=str(msclap_manifest), model="msclap-2023",
                               weights=str(tiny_weights), epochs=3, batch_size=6, learning_rate=1e-3,
                               warmup_steps=1, workers=0, device="cpu", freeze_audio=True, max_seconds=3.0))
    losses = [json.loads(line)["loss"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert losses[-1] < losses[0] - 0.5
    assert record["result"] == str(out / "msclap-2023.pth")
    before, after = official_state(tiny_weights), official_state(out / "msclap-2023.pth")
    assert changed_keys(before, after, AUDIO_KEYS) == []  # bit for bit, batch-norm statistics included
    assert len(changed_keys(before, after, TEXT_KEYS)) > 10
    assert not torch.equal(before["logit_scale"], after["logit_scale"])
    # Loads strictly, tokenizer beside it; audio embeddings are the original's, text ones are not.
    tuned, original = load_encoder("msclap-2023", weights=out / "msclap-2023.pth"), load_encoder(
        "msclap-2023", weights=tiny_weights)
    clip = [np.sin(np.arange(44100, dtype=np.float32) * 0.05)]
    np.testing.assert_array_equal(tuned.embed_audio(clip), original.embed_audio(clip))
    assert not np.allclose(tuned.embed_text(list(SOUNDS)), original.embed_text(list(SOUNDS)))
    assert tuned.weights_id != original.weights_id


def test_clapdex_train_msclap_from_a_csv_then_index_and_search(msclap_manifest, tiny_weights, tmp_path, capsys):
    rows = [json.loads(line) for line in msclap_manifest.read_text().splitlines()]
    manifest = msclap_manifest.parent / "manifest.csv"
    manifest.write_text("audio,caption\n" + "".join(f"{row['audio']},{row['caption']}\n" for row in rows))
    out = tmp_path / "run"
    assert clapdex(["--home", str(tmp_path / "home"), "--device", "cpu", "train", "--manifest", str(manifest),
                    "--out", str(out), "--model", "msclap-2023", "--weights", str(tiny_weights), "--epochs", "1",
                    "--batch-size", "12", "--learning-rate", "1e-3", "--freeze-text", "--workers", "0"]) == 0
    checkpoint = out / "msclap-2023.pth"
    assert f"trained msclap-2023: {checkpoint}" in capsys.readouterr().out
    before, after = official_state(tiny_weights), official_state(checkpoint)
    assert changed_keys(before, after, TEXT_KEYS) == []
    assert len(changed_keys(before, after, AUDIO_KEYS)) > 10

    options = ["--home", str(tmp_path / "tuned-home"), "--device", "cpu", "--model", "msclap-2023",
               "--weights", str(checkpoint)]
    assert clapdex([*options, "index", str(msclap_manifest.parent / "clips")]) == 0
    assert clapdex([*options, "search", "white noise hiss", "--top", "3", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert len(hits) == 3


def test_clapdex_train_from_library_then_index_and_search(tmp_path, capsys):
    library = tmp_path / "library"
    for folder in ("Doors", "rain", "birds", "city"):
        (library / folder).mkdir(parents=True)
    sox_tone(library / "Doors" / "DOORWood_Creak Open Slow_JD_Lib.wav", 1.5, tone="sine 200-900")
    sox_tone(library / "Doors" / "DOORMetl_Slam Hard_JD_Lib.wav", 1.0, tone="square 90")
    append_riff_chunks(sox_tone(library / "rain" / "RainOnRoof_Heavy_take2.wav", 2.0, tone="whitenoise"),
                       {b"bext": bext_chunk("Heavy rain on a tin roof", "Field Recorder X")})
    tagged(library / "birds" / "chirp.mp3", 1.0, title="Bird Chirp Morning", genre="Nature")
    sox_tone(library / "city" / "Street_Ambience_01.wav", 12.0, tone="pinknoise")
    sox_tone(library / "0001.wav", 1.0)
    home = tmp_path / "home"
    assert clapdex(["--home", str(home), "--device", "cpu", "--model", "clapdex-compact", "index", str(library)]) == 0

    out = tmp_path / "run"
    assert clapdex(["--home", str(home), "--device", "cpu", "train", "--from-library", "--out", str(out),
                    "--epochs", "2", "--learning-rate", "1e-3", "--workers", "0"]) == 0
    captured = capsys.readouterr()
    assert "6 clips from 5 files; 1 left out, with nothing to caption them by" in captured.err
    manifest = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert {row["caption"] for row in manifest} == {
        "door, wood: creak open slow", "door, metl: slam hard", "rain on roof heavy; heavy rain on a tin roof",
        "bird chirp morning (nature)", "street ambience (city)"}
    assert [(row["start"], row["end"]) for row in manifest if "start" in row] == [(0.0, 10.0), (10.0, 12.0)]
    checkpoint = out / "clapdex-compact.safetensors"
    assert f"trained clapdex-compact: {checkpoint}" in captured.out

    options = ["--home", str(tmp_path / "tuned-home"), "--device", "cpu", "--model", "clapdex-compact",
               "--weights", str(checkpoint)]
    assert clapdex([*options, "index", str(library)]) == 0
    assert clapdex([*options, "search", "rain on a roof", "--top", "2", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert len(hits) == 2
    with Catalog(f"sqlite:///{tmp_path / 'tuned-home' / 'catalog.sqlite'}") as catalog:
        assert catalog.model().weights_id == load_encoder("clapdex-compact", weights=checkpoint).weights_id
