import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from sounds import sox_tone

from encoders.audio import load_audio
from encoders.compact import CONFIGS, CompactClap, MiniLMSentenceEncoder
from training.data import GlobalBatches, MU, mu_law_decode, mu_law_encode, read_shards
from training.evaluate import (PROMPT, WORDINGS, audio_to_audio_precision, retrieval_scores, wording_scores,
                               wording_sets)
from training.pack import pack_manifest
from training.train import TrainConfig, contrastive_loss, train

# Four kinds of sound, three recordings each, at odd rates and lengths the packer must handle.
SOUNDS = {
    "a steady sine tone": "sine 440",
    # At half scale: resampled full-scale noise overshoots 1.0 now and then, and packing clips it.
    "white noise hiss": "whitenoise vol 0.5",
    "a low square wave buzz": "square 110",
    "a rising sine sweep": "sine 200-3000",
}


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    (folder / "clips").mkdir()
    rows = []
    for number, (caption, tone) in enumerate(SOUNDS.items()):
        for take, (rate, seconds) in enumerate([(44100, 0.4), (22050, 1.3), (32000, 2.6)]):
            path = sox_tone(folder / "clips" / f"{number}-{take}.wav", seconds, rate=rate, tone=tone)
            rows.append({"audio": f"clips/{path.name}", "caption": caption, "kind": "effect", "source": "sox",
                         "licence": "CC0-1.0", "origin": path.name, "duration": seconds})
    path = folder / "manifest.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.fixture(scope="module")
def shards(manifest, tmp_path_factory):
    folder = tmp_path_factory.mktemp("shards")
    pack_manifest(manifest, folder, max_seconds=2.0, shard_mib=0.1)
    return folder


def quantisation_bound(samples):
    """Half a code step (1 / MU in the compressed domain) through the expansion's slope at the
    sample, ln(1 + MU) (1 + MU |x|) / MU, with 3% for the slope's growth across that half step."""
    return np.log1p(MU) * (1 + MU * np.abs(samples)) / MU / MU * 1.03 + 1e-7


def test_mu_law_round_trip_within_quantisation_error():
    samples = np.linspace(-1, 1, 20001, dtype=np.float32)
    decoded = mu_law_decode(mu_law_encode(samples))
    assert np.all(np.abs(decoded - samples) <= quantisation_bound(samples))
    assert mu_law_decode(mu_law_encode(np.zeros(1)))[0] == pytest.approx(0, abs=1e-4)
    # Beyond full scale (a resampler's overshoot) is clipped to it.
    np.testing.assert_allclose(mu_law_decode(mu_law_encode(np.array([1.08, -1.05], np.float32))), [1, -1], atol=1e-4)


def test_pack_round_trips_audio_and_captions(manifest, shards):
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    clips = read_shards(shards)
    assert len(sorted(shards.glob("*.npz"))) > 1  # the tiny shard limit forces several
    assert len(clips) == len(rows) and clips.sample_rate == 32000
    for index, row in enumerate(rows):
        original = load_audio(manifest.parent / row["audio"], 32000)[:64000]
        decoded = mu_law_decode(clips.clip(index))
        assert decoded.shape == original.shape
        assert np.all(np.abs(decoded - original) <= quantisation_bound(original))
        assert clips.captions[index] == row["caption"]
    features = MiniLMSentenceEncoder(torch.device("cpu"))([rows[0]["caption"]]).numpy()
    np.testing.assert_allclose(clips.text_features[0], features[0], atol=2e-3)
    assert len(set(clips.caption_ids)) == len(SOUNDS)


def test_global_batches_are_the_same_for_any_number_of_ranks():
    single = list(GlobalBatches(50, 8, seed=3))
    shares = [list(GlobalBatches(50, 8, seed=3, rank=rank, world=4)) for rank in range(4)]
    assert [sum((share[i] for share in shares), []) for i in range(len(single))] == single
    assert len(single) == 6 and len({i for batch in single for i in batch}) == 48


def test_retrieval_scores_by_hand():
    # Two classes on the axes; three clips. Clip 2 (class 1) lies nearer class 0's query.
    queries = np.array([[1.0, 0.0], [0.0, 1.0]])
    audio = np.array([[1.0, 0.0], [0.0, 1.0], [0.8, 0.6]])
    scores = retrieval_scores(audio, np.array([0, 1, 1]), queries)
    assert scores["accuracy"] == pytest.approx(2 / 3)
    # Query 0 ranks clips 0, 2, 1: top-1 relevant. Query 1 ranks 1, 2, 0: top-1 relevant.
    assert scores["recall@1"] == scores["recall@5"] == 1.0
    # Top 10 (all three clips): query 0 finds 1 of 3 relevant, query 1 finds 2 of 3 -> macro over the 10 slots.
    assert scores["precision@10"] == pytest.approx((1 / 10 + 2 / 10) / 2)


def test_audio_to_audio_precision_leaves_the_query_out():
    # Two tight pairs and a stray: clip 0's nearest other clip is clip 1 (same class) -> 1/1 at k=1.
    audio = np.array([[1.0, 0.0], [0.99, 0.14], [0.0, 1.0], [0.14, 0.99], [0.7, 0.7]])
    labels = np.array([0, 0, 1, 1, 2])
    assert audio_to_audio_precision(audio, labels, k=1) == pytest.approx(4 / 5)  # the stray has no classmate
    assert audio_to_audio_precision(audio, labels, k=2) == pytest.approx((0.5 * 4 + 0) / 5)


def test_held_out_wordings_are_whole_and_not_the_prompt():
    sets = json.loads(WORDINGS.read_text())["sets"]
    classes = sorted(next(iter(sets.values())))
    assert len(sets) >= 3 and len(classes) == 10
    for wordings in sets.values():
        assert sorted(wordings) == classes
        assert all(text != PROMPT.format(name) for name, text in wordings.items())
    ordered = wording_sets(classes)
    assert all(len(queries) == 10 for queries in ordered.values())
    with pytest.raises(ValueError, match="lack classes"):
        wording_sets(classes + ["thunder"])


def test_wording_scores_per_set_and_mean(tmp_path):
    path = tmp_path / "wordings.json"
    path.write_text(json.dumps({"sets": {"right": {"a": "x", "b": "y"}, "wrong": {"a": "y", "b": "x"}}}))
    vectors = {"x": [1.0, 0.0], "y": [0.0, 1.0]}
    audio, labels = np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([0, 1])
    scores = wording_scores(audio, labels, ["a", "b"], lambda texts: np.array([vectors[t] for t in texts]), path)
    # Top 10 of two clips holds one relevant clip either way; the accuracy tells the sets apart.
    assert scores["wordings.right.accuracy"] == 1.0 and scores["wordings.wrong.accuracy"] == 0.0
    assert scores["wordings.mean.precision@10"] == pytest.approx(0.1)
    assert scores["audio_to_audio_precision@10"] == pytest.approx(0.0)


def test_shared_captions_are_positives():
    audio = torch.eye(3)
    text = torch.eye(3)
    ids = torch.tensor([0, 0, 1])
    scale = torch.tensor(np.log(100.0))
    loss = contrastive_loss(audio, text, ids, scale, audio, text, ids)
    same_caption = contrastive_loss(audio, text[[0, 0, 2]], ids, scale, audio, text[[0, 0, 2]], ids)
    assert same_caption < loss  # identical captions are rewarded, not punished, for matching both clips


def run(out, shards, epochs, **changes):
    config = TrainConfig(out=str(out), shards=str(shards), model_config="tiny", epochs=epochs, batch_size=6,
                         learning_rate=3e-3, warmup_steps=1, workers=0, device="cpu", **changes)
    return train(config)


def losses(out):
    return [json.loads(line)["loss"] for line in (out / "log.jsonl").read_text().splitlines()]


def test_training_reduces_the_loss(shards, tmp_path):
    run(tmp_path, shards, epochs=8)
    history = losses(tmp_path)
    assert len(history) == 8
    assert np.mean(history[-2:]) < np.mean(history[:2]) - 0.1
    from encoders import load_encoder

    encoder = load_encoder("clapdex-compact", weights=tmp_path / "clapdex-compact.safetensors")
    assert encoder.embed_text(list(SOUNDS)).shape == (4, 32)


def test_resume_reproduces_an_uninterrupted_run(shards, tmp_path):
    run(tmp_path / "straight", shards, epochs=3)
    run(tmp_path / "resumed", shards, epochs=3, stop_after=2)
    assert not (tmp_path / "resumed" / "clapdex-compact.safetensors").exists()
    run(tmp_path / "resumed", shards, epochs=3, resume=True)
    straight = load_file(str(tmp_path / "straight" / "model.safetensors"))
    resumed = load_file(str(tmp_path / "resumed" / "model.safetensors"))
    assert straight.keys() == resumed.keys()
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), key
    assert losses(tmp_path / "straight") == losses(tmp_path / "resumed")


@pytest.mark.gpu
def test_training_on_cuda_in_bf16(shards, tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    record = run(tmp_path, shards, epochs=2, device="cuda")
    assert np.isfinite(record["loss"])


def gathered_gradients(rank, world, port, batch, state, results):
    """One rank of a CPU (gloo) DDP step: the contrastive loss over the gathered batch, backward."""
    import os

    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from training.train import gather

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    model = CompactClap(CONFIGS["tiny"])
    model.load_state_dict(state)
    ddp = DistributedDataParallel(model.eval())  # eval: batch norms use stored statistics on every rank
    share = len(batch["lengths"]) // world
    rows = slice(rank * share, (rank + 1) * share)
    audio, text = (torch.nn.functional.normalize(part, dim=-1) for part in
                   ddp(batch["waveforms"][rows], batch["lengths"][rows], batch["text_features"][rows]))
    ids = batch["caption_ids"][rows]
    contrastive_loss(audio, text, ids, model.logit_scale, gather(audio, True), gather(text, True),
                     gather(ids, False)).backward()
    if rank == 0:
        results.update({name: p.grad.clone() for name, p in model.named_parameters()})
    dist.destroy_process_group()


def test_gathered_loss_on_two_ranks_has_the_one_process_gradient():
    import socket

    import torch.multiprocessing as mp

    torch.manual_seed(0)
    model = CompactClap(CONFIGS["tiny"]).eval()
    generator = torch.Generator().manual_seed(1)
    batch = {"waveforms": torch.randn(8, 16000, generator=generator) * 0.2,
             "lengths": torch.tensor([16000, 9000, 4000, 16000, 700, 16000, 12000, 3000]),
             "text_features": torch.randn(8, 384, generator=generator),
             "caption_ids": torch.tensor([0, 1, 2, 3, 0, 4, 5, 6])}
    audio, text = (torch.nn.functional.normalize(part, dim=-1) for part in
                   model(batch["waveforms"], batch["lengths"], batch["text_features"]))
    contrastive_loss(audio, text, batch["caption_ids"], model.logit_scale, audio, text, batch["caption_ids"]).backward()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(gathered_gradients, args=(2, port, batch, model.state_dict(), results), nprocs=2)
        for name, parameter in model.named_parameters():
            torch.testing.assert_close(results[name], parameter.grad, rtol=1e-4, atol=1e-6, msg=name)


def corpus_manifest(folder, takes=(0.4, 1.3, 2.6)):
    """A corpus as the builder writes it (32 kHz clips, one-word captions): (manifest, rows)."""
    (folder / "clips").mkdir()
    rows = []
    for number, (caption, tone) in enumerate(SOUNDS.items()):
        for take, seconds in enumerate(takes):
            path = sox_tone(folder / "clips" / f"{number}-{take}.wav", seconds, rate=32000, tone=tone)
            rows.append({"audio": f"clips/{path.name}", "caption": caption.split()[-1], "kind": "effect",
                         "source": "sox", "licence": "CC0-1.0", "origin": path.name, "duration": seconds})
    manifest = folder / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return manifest, rows


def test_vorbis_parts_unpack_to_train_and_validation_shards_and_train_with_augmentation(tmp_path):
    from training.pack import is_validation, pack_index, unpack

    manifest, rows = corpus_manifest(tmp_path)
    summary = pack_index(manifest, tmp_path / "parts", part_mib=0.05)
    assert summary["clips"] == len(rows) and summary["parts"] > 1
    counts = unpack([tmp_path / "parts"], tmp_path / "unpacked", workers=2)
    held_out = sum(is_validation(row, 0.05) for row in rows)
    assert counts == {"train": len(rows) - held_out, "validation": held_out}
    train_clips = read_shards(tmp_path / "unpacked" / "train")
    assert train_clips.weights is not None and len(train_clips) == counts["train"]
    # Refined captions: short ones gain a describing noun.
    assert all(caption.endswith("sound effect") for caption in train_clips.captions)
    record = run(tmp_path / "run", tmp_path / "unpacked" / "train", epochs=2, val_shards=str(tmp_path / "unpacked" / "train"),
                 freq_masks=2, time_masks=2, gain_db=6.0, mixup=0.5)
    assert 0.0 <= record["validation"]["mean_recall@10"] <= 1.0
    assert (tmp_path / "run" / "best.safetensors").exists()
    assert (tmp_path / "run" / "clapdex-compact.safetensors").exists()


def test_caption_variants_chosen_per_epoch_and_background_mixtures_train(tmp_path):
    from training.data import PackedClips, RandomCrops
    from training.pack import is_validation, pack_index, unpack

    manifest, rows = corpus_manifest(tmp_path, takes=(0.4, 1.3, 2.6, 1.0, 2.0))
    summary = pack_index(manifest, tmp_path / "parts", part_mib=0.2, captions=4, backgrounds=True)
    assert summary["captions_per_clip"] > 2
    training_rows = [row for row in rows if not is_validation(row)]
    assert summary["background_partners"] == len(training_rows)
    unpack([tmp_path / "parts"], tmp_path / "unpacked", workers=2)
    clips = read_shards(tmp_path / "unpacked" / "train")
    assert clips.variant_ids.shape[0] == len(clips) and clips.variant_ids.shape[1] > 2
    # The first caption is the refined path caption, as without variants.
    assert list(clips.variant_captions[clips.variant_ids[:, 0]]) == list(clips.captions)
    partners = clips.background[clips.background >= 0]
    assert len(partners) == len(clips) and partners.max() < len(clips)
    assert all(str(clips.variant_captions[row]).endswith(" in the background") for row in clips.background_ids)

    plain = RandomCrops(clips, 32000, seed=0)
    seen = set()
    for epoch in range(12):
        plain.set_epoch(epoch)
        codes, features, row, _, caption = plain[0]
        assert caption == clips.variant_captions[row] and row in clips.variant_ids[0]
        assert np.array_equal(features, clips.variant_features[row])
        seen.add(caption)
    assert len(seen) > 1  # a different wording in some epochs
    mixed = RandomCrops(clips, 32000, seed=0, background=1.0)
    codes, _, row, _, caption = mixed[0]
    assert row == clips.background_ids[0] and caption.endswith(" in the background")
    partner = int(clips.background[0])
    assert len(codes) == min(32000, max(len(clips.clip(0)), len(clips.clip(partner))))
    with pytest.raises(ValueError, match="--backgrounds"):
        RandomCrops(PackedClips(clips.audio, clips.offsets, clips.text_features, clips.captions, clips.sample_rate),
                    32000, seed=0, background=0.5)
    record = run(tmp_path / "run", tmp_path / "unpacked" / "train", epochs=2, background=0.5, mixup=0.25)
    assert np.isfinite(record["loss"])
    own = RandomCrops(clips, 32000, seed=0, background=1.0, own_captions=True)[0][5]
    assert set(own[own >= 0]) == set(clips.variant_ids[0][clips.variant_ids[0] >= 0]) | set(
        clips.variant_ids[partner][clips.variant_ids[partner] >= 0])
    record = run(tmp_path / "negatives", tmp_path / "unpacked" / "train", epochs=2, background=0.5, mixup=0.25,
                 text_negatives=True, text_geometry=0.5, geometry_sample=8)
    assert np.isfinite(record["loss"])


def test_background_is_mixed_below_the_clip():
    from training.data import mix_codes

    rng = np.random.default_rng(0)
    front = 0.3 * np.sin(np.arange(32000) * 2 * np.pi * 440 / 32000)
    back = 0.5 * rng.uniform(-1, 1, 16000)
    mixed = mu_law_decode(mix_codes(mu_law_encode(front), mu_law_encode(back), 12.0))
    assert len(mixed) == 32000
    added = mixed - mu_law_decode(mu_law_encode(front))
    level = 20 * np.log10(np.sqrt(np.mean(added[:16000] ** 2)) / np.sqrt(np.mean(front ** 2)))
    # Where the partner sounds (its first half second), 12 dB under the clip's RMS; silence after.
    assert level == pytest.approx(-12, abs=0.5)
    assert np.abs(added[16000:]).max() < 0.01


def test_caption_variants_use_wordnet_and_keep_the_refined_caption_first():
    from training.captions import refine, variants

    found = variants("horse neigh (animals)", "animal", 5, key="clips/a.ogg")
    assert found[0] == refine("horse neigh (animals)", "animal")
    assert len(found) == len(set(found)) >= 4
    assert any("equine neigh" in variant for variant in found)  # the broader term for the noun
    assert any("(animals)" not in variant for variant in found[1:])  # one without the folder context
    assert found == variants("horse neigh (animals)", "animal", 5, key="clips/a.ogg")  # fixed by the key
    assert variants("horse neigh", "animal", 1) == [refine("horse neigh", "animal")]


def test_background_mixtures_name_each_clip_by_its_caption_without_the_folder_context():
    from training.captions import refine, split_context
    from training.pack import caption_table

    assert split_context("lava rumble (ambience)") == ("lava rumble", " (ambience)")
    assert split_context("door creak") == ("door creak", "")
    assert "".join(split_context("tom drum (drums) (kit)")) == "tom drum (drums) (kit)"
    rows = [{"caption": f"{name} (pack {number})", "kind": "effect", "audio": f"clips/{number}.wav", "source": "sox",
             "origin": f"{number}.wav"} for number, name in enumerate(("burp", "lava rumble", "glass clink", "door slam"))]

    table = caption_table(rows, captions=1, backgrounds=True)

    heads = {split_context(refine(row["caption"], row["kind"]))[0] for row in rows}
    mixtures = [str(table["caption_table"][row]) for row in table["background_ids"] if row >= 0]
    assert len(mixtures) >= 2
    for mixture in mixtures:
        front, back = mixture.removesuffix(" in the background").split(" with ")
        assert front in heads and back in heads and front != back


def test_caption_refinement():
    from training.captions import refine

    assert refine("burp", "effect") == "burp sound effect"
    assert refine("lavarumble (ambience)", "ambience") == "lava rumble, ambient background sound (ambience)"
    assert refine("music", "music") == "a piece of music"
    assert refine("key pressed on a mechanical computer keyboard", "ui") == "key pressed on a mechanical computer keyboard"


def test_text_negatives_leave_out_the_batch_the_clip_and_near_synonyms():
    from training.train import excluded_negatives

    table = torch.eye(6)  # six captions, MiniLM features orthogonal
    features = torch.stack([table[0], 0.6 * table[0] + 0.8 * table[5], table[2]])  # row 1: a mixup
    caption_ids = torch.tensor([0, -5, 2])
    own = torch.tensor([[0, 3, -1, -1], [-1, -1, -1, -1], [2, -1, -1, -1]])
    excluded = excluded_negatives(features, caption_ids, caption_ids, own, table, similarity=0.8)
    assert excluded[0].tolist() == [True, False, True, True, False, False]  # batch rows 0, 2; own 3
    assert excluded[1].all()  # a mixup's caption is no table row: it gets no further negatives
    assert excluded[2].tolist() == [True, False, True, False, False, False]
    # A near-synonym of row 0's caption (cosine 0.9 with it) is not its negative either.
    table = torch.cat([table, (0.9 * table[0] + 0.436 * table[1])[None]])
    own = torch.cat([own, torch.full((3, 1), -1)], dim=1)
    assert excluded_negatives(features, caption_ids, caption_ids, own, table, 0.8)[0, 6]


def test_further_negatives_raise_the_loss_and_excluded_ones_change_nothing():
    generator = torch.Generator().manual_seed(0)
    audio = torch.nn.functional.normalize(torch.randn(4, 8, generator=generator), dim=-1)
    text = torch.nn.functional.normalize(audio + 0.3 * torch.randn(4, 8, generator=generator), dim=-1)
    negatives = torch.nn.functional.normalize(torch.randn(5, 8, generator=generator), dim=-1)
    ids, scale = torch.arange(4), torch.tensor(np.log(20.0))
    plain = contrastive_loss(audio, text, ids, scale, audio, text, ids)
    none = contrastive_loss(audio, text, ids, scale, audio, text, ids, negatives=negatives,
                            excluded=torch.ones(4, 5, dtype=torch.bool))
    assert torch.isfinite(none) and none == pytest.approx(plain.item(), abs=1e-6)
    more = contrastive_loss(audio, text, ids, scale, audio, text, ids, negatives=negatives,
                            excluded=torch.zeros(4, 5, dtype=torch.bool))
    assert more > plain


def test_geometry_loss_is_zero_for_a_rotation_of_minilm_and_positive_otherwise():
    from training.train import geometry_loss

    generator = torch.Generator().manual_seed(0)
    features = torch.nn.functional.normalize(torch.randn(16, 8, generator=generator), dim=-1)
    rotation = torch.linalg.qr(torch.randn(8, 8, generator=generator))[0]
    assert geometry_loss(features @ rotation, features) == pytest.approx(0.0, abs=1e-5)
    shuffled = torch.nn.functional.normalize(torch.randn(16, 8, generator=generator), dim=-1)
    assert geometry_loss(shuffled, features) > 0.5


def test_a_later_corpus_adds_only_its_new_clips_to_the_parts_and_the_index_covers_all(tmp_path):
    import tarfile

    from training.pack import main as pack_main, pack_index, unpack

    (tmp_path / "first").mkdir()
    first, rows = corpus_manifest(tmp_path / "first")
    pack_index(first, tmp_path / "bundle1", part_mib=0.05)
    # A later corpus: one clip the first one has too (same audio name: the same fingerprint), two new.
    later = tmp_path / "later"
    (later / "clips").mkdir(parents=True)
    shared = dict(rows[0])
    sox_tone(later / shared["audio"], shared["duration"], rate=32000, tone="sine 440")
    new = [{**shared, "audio": f"clips/new-{n}.wav", "caption": f"new sound {n}", "origin": f"new-{n}.wav"}
           for n in range(2)]
    for n, row in enumerate(new):
        sox_tone(later / row["audio"], 1.0, rate=32000, tone=f"sine {300 + 200 * n}")
    (later / "manifest.jsonl").write_text("".join(json.dumps(row) + "\n" for row in [shared, *new]))

    summary = pack_index([first, later / "manifest.jsonl"], tmp_path / "bundle2", part_mib=0.05,
                         packed=tmp_path / "bundle1" / "index.npz")
    assert summary["clips"] == len(rows) + 2 and summary["clips_in_parts"] == 2
    in_parts = set()
    for part in (tmp_path / "bundle2").glob("part-*.tar"):
        with tarfile.open(part) as tar:
            in_parts |= set(tar.getnames())
    assert in_parts == {row["audio"] for row in new}
    with np.load(tmp_path / "bundle2" / "index.npz") as index:
        assert list(index["audio"]) == [row["audio"] for row in rows] + [row["audio"] for row in new]
    # The new bundle's index with both bundles' parts gives every clip.
    counts = unpack([tmp_path / "bundle2", tmp_path / "bundle1"], tmp_path / "unpacked", workers=2)
    assert counts["train"] + counts["validation"] == len(rows) + 2

    with pytest.raises(SystemExit) as stopped:
        pack_main(["index", "--manifest", str(first), "--out", str(tmp_path / "x"), "--packed", str(first)])
    assert stopped.value.code == 2
    with pytest.raises(SystemExit) as stopped:
        pack_main(["index", "--manifest", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "x")])
    assert stopped.value.code == 2
