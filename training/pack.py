"""Pack a corpus manifest, or ESC-10, into shards the GPU machine reads with numpy alone.

    python -m training.pack corpus --manifest /work/corpus/manifest.jsonl --out .carry/shards
    python -m training.pack esc10 --folder ../shared/data/esc10 --out .carry/esc10

Each clip is decoded here once, to mono at the model rate, cut to at most ``--max-seconds``
and stored as 8-bit mu-law (32 kB per second at 32 kHz); each caption goes through the frozen
MiniLM text tower here too (the GPU machine has neither the decoders nor the 88 MB of MiniLM
weights). The format is described in ``training.data``. Shards stay under
``--shard-mib`` (60 MiB by default) as written, so each one fits, with the repository, in one
64 MiB call to the GPU machine.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import logging
import math
import sys
import tarfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from encoders.compact import CompactConfig, MiniLMSentenceEncoder
from training.data import mu_law_encode
from training.evaluate import PROMPT, esc10_files

log = logging.getLogger(__name__)
MIB = 1 << 20
TEXT_BATCH = 256


def write_shards(out: str | Path, clips: Iterable[tuple[np.ndarray, str]], text_features: np.ndarray,
                 sample_rate: int, shard_mib: float, extra: dict[str, np.ndarray] | None = None,
                 shared: dict[str, np.ndarray] | None = None, compress: bool = True) -> list[Path]:
    """Write ``clips`` ((mu-law codes, caption), in order) as ``shard-NNNNN.npz`` under ``out``.

    ``text_features`` and the arrays in ``extra`` have one row per clip; ``shared`` arrays go
    into every shard whole. A shard closes before its compressed audio and features pass ``shard_mib``.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("shard-*.npz"):
        stale.unlink()
    extra, shared = extra or {}, shared or {}
    limit = shard_mib * MIB
    paths, codes, captions, first = [], [], [], 0

    def flush() -> None:
        rows = slice(first, first + len(codes))
        path = out / f"shard-{len(paths):05d}.npz"
        (np.savez_compressed if compress else np.savez)(
            path, audio=np.concatenate(codes),
            offsets=np.concatenate([[0], np.cumsum([len(c) for c in codes])]).astype(np.int64),
            text_features=text_features[rows].astype(np.float16), captions=np.array(captions),
            sample_rate=np.int64(sample_rate), **{name: values[rows] for name, values in extra.items()}, **shared)
        paths.append(path)

    size = 0
    row_bytes = text_features.shape[1] * 2
    for clip_codes, caption in clips:
        # Fast deflate of the clip alone: an upper estimate of what it adds to the level-6 shard.
        clip_bytes = len(zlib.compress(clip_codes.tobytes(), 1)) + row_bytes
        if codes and size + clip_bytes > limit:
            flush()
            first += len(codes)
            codes, captions, size = [], [], 0
        codes.append(clip_codes)
        captions.append(caption)
        size += clip_bytes
    if codes:
        flush()
    oversized = [path for path in paths if compress and path.stat().st_size > limit]
    if oversized:
        raise ValueError(f"{oversized[0]} is over {shard_mib} MiB; pack again with a smaller --shard-mib")
    return paths


@dataclass(frozen=True)
class ManifestRow:
    audio: Path  # absolute, or relative to the working folder when the manifest's path was
    caption: str
    start: float = 0.0  # seconds into the file
    end: float | None = None  # seconds; None: the file's end


def read_manifest(path: str | Path) -> list[ManifestRow]:
    """The usable rows of a manifest: JSON lines, or CSV with a header row (a ``.csv`` name),
    with ``audio`` (a path; relative ones are resolved against the manifest's folder),
    ``caption`` and optionally ``start`` and ``end`` (seconds). Other fields are ignored; a row
    that cannot be used is logged with its line number and skipped."""
    path = Path(path)
    with open(path, newline="", encoding="utf-8") as file:
        if path.suffix.lower() == ".csv":
            reader = csv.DictReader(file)
            records = [(reader.line_num, record) for record in reader]
        else:
            records = []
            for number, line in enumerate(file, 1):
                if not line.strip():
                    continue
                try:
                    records.append((number, json.loads(line)))
                except json.JSONDecodeError as error:
                    log.warning("%s line %d skipped: not JSON (%s)", path, number, error)
    rows = []
    for number, record in records:
        try:
            rows.append(manifest_row(record, path.parent))
        except ValueError as error:
            log.warning("%s line %d skipped: %s", path, number, error)
    return rows


def manifest_row(record, folder: Path) -> ManifestRow:
    if not isinstance(record, dict):
        raise ValueError("not an object with audio and caption")
    audio, caption = (str(record.get(name) or "").strip() for name in ("audio", "caption"))
    if not audio or not caption:
        raise ValueError("audio and caption are both needed")
    start, end = (record.get(name) for name in ("start", "end"))
    try:
        start = float(start) if start not in (None, "") else 0.0
        end = float(end) if end not in (None, "") else None
    except (TypeError, ValueError):
        raise ValueError(f"start {start!r} / end {end!r} are not seconds") from None
    if not (0 <= start < (end if end is not None else math.inf)):
        raise ValueError(f"start {start} / end {end} do not make a span")
    return ManifestRow(folder / audio, caption, start, end)


def read_span(path: Path, sample_rate: int, start: int, stop: int) -> np.ndarray:
    """Samples [start, stop) of ``path``, mono at ``sample_rate``, decoding no further than needed."""
    from encoders.audio import AudioStream

    kept, position = [], 0
    with AudioStream(path, sample_rate) as stream:
        for block in stream.blocks():
            kept.append(block[max(0, start - position):max(0, stop - position)])
            position += len(block)
            if position >= stop:
                break
    return np.concatenate(kept) if kept else np.zeros(0, np.float32)


def decoded(files: list[Path], sample_rate: int, max_samples: int,
            spans: list[tuple[float, float | None]] | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """(index, mu-law codes) for each file that decodes: its span (start, end seconds; the
    whole file by default), at most ``max_samples`` of it; the others are logged and skipped."""
    from encoders.audio import AudioDecodeError

    for index, path in enumerate(files):
        start, end = spans[index] if spans else (0.0, None)
        first = round(start * sample_rate)
        stop = first + max_samples if end is None else min(round(end * sample_rate), first + max_samples)
        try:
            samples = read_span(path, sample_rate, first, stop)
        except AudioDecodeError as error:
            log.warning("skipped %s", error)
            continue
        if not len(samples):
            log.warning("skipped %s: nothing in %.2f-%s s", path, start, end if end is not None else "end")
            continue
        if index % 500 == 0:
            log.info("decoded %d / %d", index, len(files))
        yield index, mu_law_encode(samples)


def caption_features(captions: list[str]) -> np.ndarray:
    """float16 (n, 384): each distinct caption through MiniLM once."""
    distinct, inverse = np.unique(np.array(captions), return_inverse=True)
    features = MiniLMSentenceEncoder(torch.device("cpu"))(distinct.tolist(), TEXT_BATCH).numpy()
    return features[inverse].astype(np.float16)


def pack_manifest(manifest: str | Path, out: str | Path, sample_rate: int = CompactConfig.sample_rate,
                  max_seconds: float = 10.0, shard_mib: float = 60.0) -> list[Path]:
    """Every usable row of ``manifest`` (``read_manifest``), decoded and packed into shards."""
    rows = read_manifest(manifest)
    kept, codes = [], []
    for index, clip_codes in decoded([row.audio for row in rows], sample_rate, round(max_seconds * sample_rate),
                                     [(row.start, row.end) for row in rows]):
        kept.append(index)
        codes.append(clip_codes)
    if not kept:
        raise ValueError(f"No clip of {manifest} could be read")
    log.info("packed %d of %d manifest rows", len(kept), len(rows))
    captions = [rows[index].caption for index in kept]
    return write_shards(out, zip(codes, captions), caption_features(captions), sample_rate, shard_mib)


def pack_esc10(folder: str | Path, out: str | Path, sample_rate: int = CompactConfig.sample_rate,
               shard_mib: float = 60.0) -> list[Path]:
    files, labels, class_names = esc10_files(folder)
    codes = [clip_codes for _, clip_codes in decoded(files, sample_rate, sys.maxsize)]
    if len(codes) != len(files):
        raise ValueError(f"Only {len(codes)} of {len(files)} ESC-10 files decode; the validation set must be whole")
    prompts = [PROMPT.format(name) for name in class_names]
    return write_shards(
        out, zip(codes, (prompts[label] for label in labels)), caption_features([prompts[label] for label in labels]),
        sample_rate, shard_mib, extra={"labels": np.asarray(labels, dtype=np.int64)},
        shared={"class_names": np.array(class_names), "class_text_features": caption_features(prompts)})


# ---------------------------------------------------------------- Vorbis clips for the GPU machine
# The packed mu-law corpus is about twice the size of the Vorbis clips it came from, so for the GPU
# the clips travel as they are (tar parts of at most --part-mib, one a call) with an index of
# captions and caption features, and are decoded there (soundfile, carried as a wheel) by
# ``unpack``, which writes ordinary shards.

INDEX_FILE = "index.npz"
# Speech is a sixth of the clips and music is long: each counts this much in the loss.
KIND_WEIGHTS = {"speech": 0.3, "music": 0.5}
VALIDATION_SHARE = 0.05


def is_validation(row: dict, share: float = VALIDATION_SHARE) -> bool:
    """Held-out corpus slice for model selection: a stable hash of the clip's source package and
    origin, so every source gives about ``share`` of its clips and all windows of one file fall
    on the same side."""
    key = f"{row['source'].split('@')[0]}/{row['origin']}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") % 10_000 < share * 10_000


def caption_table(rows: list[dict], captions: int, backgrounds: bool, seed: int = 0) -> dict[str, np.ndarray]:
    """Each clip's captions (``training.captions.variants``, up to ``captions``; speech keeps its
    one caption: its words are what is said) as rows of one table of distinct captions, and, with
    ``backgrounds``, a partner for each training clip (another training clip, not speech, with
    another caption) and the row of "X with Y in the background". Partners are drawn with ``seed``."""
    from training.captions import refine, split_context, variants

    choices = [variants(row["caption"], row["kind"], captions, key=row["audio"])
               if captions > 1 and row["kind"] != "speech" else [refine(row["caption"], row["kind"])] for row in rows]
    partners = np.full(len(rows), -1, dtype=np.int64)
    mixtures: list[str | None] = [None] * len(rows)
    if backgrounds:
        rng = np.random.default_rng(seed)
        eligible = np.array([i for i, row in enumerate(rows) if row["kind"] != "speech" and not is_validation(row)])
        heads = [split_context(choice[0])[0].rstrip(",") for choice in choices]
        for i in eligible:
            for _ in range(8):  # a partner with another caption; give up after a few draws
                j = int(rng.choice(eligible))
                if heads[j] != heads[i]:
                    partners[i], mixtures[i] = j, f"{heads[i]} with {heads[j]} in the background"
                    break
    table = sorted({text for choice in choices for text in choice} | {text for text in mixtures if text})
    row_of = {text: number for number, text in enumerate(table)}
    width = max(len(choice) for choice in choices)
    ids = np.full((len(rows), width), -1, dtype=np.int32)
    for i, choice in enumerate(choices):
        ids[i, :len(choice)] = [row_of[text] for text in choice]
    return {"caption_table": np.array(table), "caption_table_features": caption_features(table),
            "caption_choices": ids, "background": partners,
            "background_ids": np.array([row_of[text] if text else -1 for text in mixtures], dtype=np.int64)}


def pack_index(manifests: str | Path | list[str | Path], out: str | Path, part_mib: float = 46.0, captions: int = 1,
               backgrounds: bool = False, packed: str | Path | None = None) -> dict:
    """``out/index.npz`` (clip paths, kinds, loss weights, the validation flag, and the captions:
    ``caption_table`` with its MiniLM features, each clip's ``caption_choices`` in it, the first
    being the refined path caption, and background partners, as ``caption_table`` makes them)
    and ``out/part-N.tar`` (the Vorbis clips, uncompressed tar).

    ``manifests``: one corpus or several (a corpus and one built later from more sources), their
    rows in order; a clip two of them hold (the same ``audio``, a fingerprint) is kept once, as
    the first has it. ``packed``: the index of a bundle already laid out; the clips it lists
    travel in that bundle's parts, so only the others go into this one's (the index still
    covers all)."""
    manifests = [Path(manifests)] if isinstance(manifests, (str, Path)) else [Path(m) for m in manifests]
    out = Path(out)
    carried: set[str] = set()
    if packed is not None:
        with np.load(packed) as earlier:
            if "audio" not in earlier.files:
                raise ValueError(f"{packed} is not an index made by 'pack index' (it has no audio list)")
            carried = set(earlier["audio"].tolist())
    rows, folders, seen = [], [], set()
    for manifest in manifests:
        for line in manifest.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                if row["audio"] not in seen:
                    seen.add(row["audio"])
                    rows.append(row)
                    folders.append(manifest.parent)
    out.mkdir(parents=True, exist_ok=True)
    for stale in [*out.glob("part-*.tar"), out / INDEX_FILE]:
        stale.unlink(missing_ok=True)
    table = caption_table(rows, captions, backgrounds)
    np.savez_compressed(
        out / INDEX_FILE, audio=np.array([row["audio"] for row in rows]), kinds=np.array([row["kind"] for row in rows]),
        weights=np.array([KIND_WEIGHTS.get(row["kind"], 1.0) for row in rows], dtype=np.float32),
        validation=np.array([is_validation(row) for row in rows]), **table)
    parts, size, tar, in_parts = 0, 0.0, None, 0
    for row, folder in zip(rows, folders):
        if row["audio"] in carried:
            continue
        path = folder / row["audio"]
        if tar is None or size + path.stat().st_size > part_mib * MIB:
            if tar is not None:
                tar.close()
            tar, size = tarfile.open(out / f"part-{parts}.tar", "w"), 0.0
            parts += 1
        tar.add(path, arcname=row["audio"])
        size += path.stat().st_size + 1024
        in_parts += 1
    if tar is not None:
        tar.close()
    validation = sum(is_validation(row) for row in rows)
    return {"clips": len(rows), "validation": validation, "parts": parts, "clips_in_parts": in_parts,
            "distinct_captions": len(set(table["caption_table"][table["caption_choices"][:, 0]])),
            "caption_table": len(table["caption_table"]),
            "captions_per_clip": float((table["caption_choices"] >= 0).sum(axis=1).mean()),
            "background_partners": int((table["background"] >= 0).sum()),
            "index_mib": round((out / INDEX_FILE).stat().st_size / MIB, 1)}


def _decode_ogg(path: str) -> np.ndarray:
    import soundfile

    samples, rate = soundfile.read(path, dtype="float32", always_2d=True)
    if rate != CompactConfig.sample_rate:
        raise ValueError(f"{path} is {rate} Hz")
    return mu_law_encode(samples.mean(axis=1))


def unpack(folders: list[str | Path], out: str | Path, workers: int = 16, shard_mib: float = 1024.0) -> dict:
    """On the GPU machine: every part-*.tar under ``folders`` opened, the clips of the index (in the
    first folder that has one) decoded in ``workers`` processes, and written as uncompressed shards
    to ``out/train`` and ``out/validation`` (with a ``weights`` array)."""
    import multiprocessing

    folders, out = [Path(folder) for folder in folders], Path(out)
    clips = out / "clips"
    for folder in folders:
        for part in sorted(folder.glob("part-*.tar")):
            with tarfile.open(part) as tar:
                tar.extractall(clips, filter="data")
    index_path = next(folder / INDEX_FILE for folder in folders if (folder / INDEX_FILE).exists())
    with np.load(index_path) as index:
        index = {name: index[name] for name in index.files}
    with multiprocessing.Pool(workers) as pool:
        codes = pool.map(_decode_ogg, [str(clips / audio) for audio in index["audio"]], chunksize=32)
    choices, table_features = index["caption_choices"].astype(np.int64), index["caption_table_features"]
    counts = {}
    for name, rows in (("train", ~index["validation"]), ("validation", index["validation"])):
        rows = np.flatnonzero(rows)
        # Partners are clip numbers of the whole index; in the shards, rows of this split.
        local = np.full(len(index["audio"]), -1, dtype=np.int64)
        local[rows] = np.arange(len(rows))
        partner = np.where(index["background"][rows] >= 0, local[np.maximum(index["background"][rows], 0)], -1)
        captions = index["caption_table"][choices[rows, 0]]
        write_shards(out / name, ((codes[i], caption) for i, caption in zip(rows, captions)),
                     table_features[choices[rows, 0]], CompactConfig.sample_rate, shard_mib,
                     extra={"weights": index["weights"][rows], "variant_ids": choices[rows], "background": partner,
                            "background_ids": np.where(partner >= 0, index["background_ids"][rows], -1)},
                     shared={"variant_table_features": table_features, "variant_table_captions": index["caption_table"]},
                     compress=False)
        counts[name] = len(rows)
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.pack", description=__doc__.split("\n\n")[0])
    verbs = parser.add_subparsers(dest="verb", required=True)
    corpus = verbs.add_parser("corpus", help="a manifest, JSON lines or CSV (audio path, caption, optional start/end)")
    corpus.add_argument("--manifest", required=True)
    corpus.add_argument("--max-seconds", type=float, default=10.0, help="keep at most this much of each clip")
    esc10 = verbs.add_parser("esc10", help="ESC-10 validation: class folders of recordings")
    esc10.add_argument("--folder", required=True)
    index = verbs.add_parser("index", help="Vorbis clips in tar parts plus an index, for the GPU machine")
    index.add_argument("--manifest", required=True, action="append",
                       help="a corpus manifest; again for each further corpus (a clip in two is kept once)")
    index.add_argument("--packed", help="index.npz of a bundle already laid out: its clips are left out of the parts")
    index.add_argument("--out", required=True)
    index.add_argument("--part-mib", type=float, default=46.0)
    index.add_argument("--captions", type=int, default=1,
                       help="captions per clip (the refined one and WordNet/template variants), one chosen per epoch")
    index.add_argument("--backgrounds", action="store_true",
                       help="give each training clip a partner and the caption 'X with Y in the background'")
    unpacked = verbs.add_parser("unpack", help="(GPU machine) tar parts + index -> OUT/train, OUT/validation shards")
    unpacked.add_argument("folders", nargs="+")
    unpacked.add_argument("--out", required=True)
    unpacked.add_argument("--workers", type=int, default=16)
    for verb in (corpus, esc10):
        verb.add_argument("--out", required=True)
        verb.add_argument("--sample-rate", type=int, default=CompactConfig.sample_rate)
        verb.add_argument("--shard-mib", type=float, default=60.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.verb == "index":
        if args.captions < 1:
            parser.error(f"--captions must be at least 1, not {args.captions}")
        for path in [*args.manifest, *([args.packed] if args.packed else [])]:
            if not Path(path).is_file():
                parser.error(f"no such file: {path}")
        try:
            print(json.dumps(pack_index(args.manifest, args.out, args.part_mib, args.captions, args.backgrounds,
                                        args.packed)))
        except (ValueError, KeyError, OSError) as error:
            parser.error(f"cannot pack the index: {error}")
        return 0
    if args.verb == "unpack":
        print(json.dumps(unpack(args.folders, args.out, args.workers)))
        return 0
    if args.verb == "corpus":
        paths = pack_manifest(args.manifest, args.out, args.sample_rate, args.max_seconds, args.shard_mib)
    else:
        paths = pack_esc10(args.folder, args.out, args.sample_rate, args.shard_mib)
    for path in paths:
        with np.load(path) as shard:
            seconds = len(shard["audio"]) / int(shard["sample_rate"])
            print(f"{path}\t{len(shard['offsets']) - 1} clips\t{seconds / 3600:.2f} h\t{path.stat().st_size / MIB:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
