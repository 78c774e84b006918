"""Packed training and validation clips: the shard format, its reader, and crops for training.

Imports numpy and torch only: this runs on the GPU machine, which has no audio decoders.

A shard is an ``.npz`` file (deflate-compressed) holding
  * ``audio``: uint8, every clip's 8-bit mu-law samples one after another, mono at ``sample_rate``;
  * ``offsets``: int64 (clips + 1,), clip i is ``audio[offsets[i]:offsets[i + 1]]``;
  * ``text_features``: float16 (clips, 384), each clip's caption through the frozen text tower;
  * ``captions``: str (clips,); ``sample_rate``: int;
  * optionally ``weights``: float32 (clips,), each clip's share in the loss (``pack unpack`` writes it);
  * optionally (``pack index --captions N``/``--backgrounds``) ``variant_ids`` int64 (clips, N):
    each clip's captions as rows of ``variant_table_features`` float16 (captions, 384) and
    ``variant_table_captions`` str (captions,), -1 where a clip has fewer; ``background``
    int64 (clips,): a partner clip (its row in the folder's shards taken together, -1 none) and ``background_ids``
    int64 (clips,): the table row of "X with Y in the background";
  * validation shards also: ``labels`` int64 (clips,), ``class_names`` str (classes,) and
    ``class_text_features`` float16 (classes, 384), the class prompts through the text tower.
8-bit mu-law keeps about 38 dB signal-to-noise at any level, far below what a log-mel CNN
resolves, at half the bytes of int16; deflate saves a little more on quiet clips.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

MU = 255
SHARD_PATTERN = "*.npz"


def mu_law_encode(samples: np.ndarray) -> np.ndarray:
    clipped = np.clip(np.asarray(samples, dtype=np.float32), -1.0, 1.0)
    compressed = np.sign(clipped) * np.log1p(MU * np.abs(clipped)) / np.log1p(MU)
    return np.round((compressed + 1.0) * (MU / 2)).astype(np.uint8)


def mu_law_table() -> torch.Tensor:
    """(256,) float32: the sample each 8-bit code stands for; indexing it decodes a whole batch at once."""
    compressed = torch.arange(MU + 1, dtype=torch.float64) * (2 / MU) - 1.0
    return (torch.sign(compressed) * torch.expm1(compressed.abs() * np.log1p(MU)) / MU).float()


def mu_law_decode(codes: np.ndarray) -> np.ndarray:
    return mu_law_table().numpy()[np.asarray(codes, dtype=np.intp)]


@dataclass
class PackedClips:
    """Every clip of a folder of shards, in memory (still mu-law: one byte a sample)."""

    audio: np.ndarray  # uint8
    offsets: np.ndarray  # int64 (clips + 1,)
    text_features: np.ndarray  # float16 (clips, features)
    captions: np.ndarray  # str (clips,)
    sample_rate: int
    labels: np.ndarray | None = None
    class_names: np.ndarray | None = None
    class_text_features: np.ndarray | None = None
    weights: np.ndarray | None = None  # float32 (clips,): each clip's share in the loss (1 if absent)
    variant_ids: np.ndarray | None = None  # int64 (clips, captions): rows of variant_features, -1 padded
    variant_features: np.ndarray | None = None  # float16 (table, features)
    variant_captions: np.ndarray | None = None  # str (table,)
    background: np.ndarray | None = None  # int64 (clips,): partner clip heard in the background, -1 none
    background_ids: np.ndarray | None = None  # int64 (clips,): table row of the mixture's caption

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def clip(self, index: int) -> np.ndarray:
        return self.audio[self.offsets[index]:self.offsets[index + 1]]

    @property
    def caption_ids(self) -> np.ndarray:
        """Clips that share a caption share an id: they are positives for each other, not negatives."""
        return np.unique(self.captions, return_inverse=True)[1].astype(np.int64)


def read_shards(folder: str | Path) -> PackedClips:
    paths = sorted(Path(folder).glob(SHARD_PATTERN))
    if not paths:
        raise FileNotFoundError(f"No {SHARD_PATTERN} shards in {folder}")
    audio, lengths, text_features, captions, labels, weights = [], [], [], [], [], []
    rates, class_names, class_text_features = set(), None, None
    variant_ids, background, background_ids, table = [], [], [], {}
    for path in paths:
        with np.load(path, allow_pickle=False) as shard:
            audio.append(shard["audio"])
            lengths.append(np.diff(shard["offsets"]))
            text_features.append(shard["text_features"])
            captions.append(shard["captions"])
            rates.add(int(shard["sample_rate"]))
            if "weights" in shard:
                weights.append(shard["weights"])
            if "variant_ids" in shard:
                variant_ids.append(shard["variant_ids"])
                background.append(shard["background"])  # rows of the whole folder, not of this shard
                background_ids.append(shard["background_ids"])
                table = {"variant_features": shard["variant_table_features"],
                         "variant_captions": shard["variant_table_captions"]}
            if "labels" in shard:
                labels.append(shard["labels"])
                class_names = shard["class_names"]
                class_text_features = shard["class_text_features"]
    if len(rates) != 1:
        raise ValueError(f"Shards in {folder} mix sample rates {sorted(rates)}")
    if labels and len(labels) != len(paths):
        raise ValueError(f"Some shards in {folder} have labels and some do not")
    if variant_ids and len(variant_ids) != len(paths):
        raise ValueError(f"Some shards in {folder} have caption variants and some do not")
    if variant_ids:
        table.update(variant_ids=np.concatenate(variant_ids), background=np.concatenate(background),
                     background_ids=np.concatenate(background_ids))
    return PackedClips(
        audio=np.concatenate(audio),
        offsets=np.concatenate([[0], np.cumsum(np.concatenate(lengths))]).astype(np.int64),
        text_features=np.concatenate(text_features),
        captions=np.concatenate(captions),
        sample_rate=rates.pop(),
        labels=np.concatenate(labels) if labels else None,
        class_names=class_names,
        class_text_features=class_text_features,
        weights=np.concatenate(weights).astype(np.float32) if len(weights) == len(paths) else None,
        **table,
    )


class RandomCrops(Dataset):
    """Clip i -> (mu-law codes of a crop of at most ``crop_samples``, caption features, caption id,
    loss weight, caption).

    The crop offset comes from (seed, epoch, i) alone, so a run sees the same crops whatever
    the number of loader workers or GPUs, and a resumed run sees what it would have seen. With
    caption variants in the shards, the caption is one of the clip's, chosen the same way (the
    caption id is then its table row: clips given the same wording are each other's positives);
    with ``background`` > 0, that share of the clips that have a partner are heard with the
    partner's crop mixed in 6 to 12 dB below them, captioned "X with Y in the background".
    With ``own_captions`` (for ``--text-negatives``) each item also carries the table rows that
    describe what is heard: all of the clip's captions, and its partner's in a mixture, -1 padded
    to a fixed width; those are never taken as the clip's negatives.
    """

    def __init__(self, clips: PackedClips, crop_samples: int, seed: int, background: float = 0.0,
                 own_captions: bool = False):
        if background and clips.background is None:
            raise ValueError("background mixtures need shards packed with --backgrounds")
        if own_captions and clips.variant_ids is None:
            raise ValueError("text negatives need shards packed with caption variants (pack index --captions)")
        self.clips = clips
        self.crop_samples = crop_samples
        self.seed = seed
        self.background = background
        self.own_captions = own_captions
        self.epoch = 0
        self.caption_ids = clips.caption_ids if clips.variant_ids is None else None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.clips)

    def crop(self, index: int, rng: np.random.Generator) -> np.ndarray:
        codes = self.clips.clip(index)
        if len(codes) > self.crop_samples:
            start = rng.integers(len(codes) - self.crop_samples + 1)
            codes = codes[start:start + self.crop_samples]
        return codes

    def __getitem__(self, index: int):
        clips = self.clips
        codes = self.crop(index, np.random.default_rng([self.seed, self.epoch, index]))
        weight = 1.0 if clips.weights is None else float(clips.weights[index])
        if clips.variant_ids is None:
            return codes, clips.text_features[index], self.caption_ids[index], weight, clips.captions[index]
        choice = np.random.default_rng([self.seed, self.epoch, index, 1])
        own = np.full(2 * clips.variant_ids.shape[1], -1, dtype=np.int64)
        own[:clips.variant_ids.shape[1]] = clips.variant_ids[index]
        if self.background and clips.background[index] >= 0 and choice.random() < self.background:
            partner = int(clips.background[index])
            codes = mix_codes(codes, self.crop(partner, choice), choice.uniform(6.0, 12.0))
            row = int(clips.background_ids[index])
            own[clips.variant_ids.shape[1]:] = clips.variant_ids[partner]
        else:
            rows = clips.variant_ids[index][clips.variant_ids[index] >= 0]
            row = int(rows[choice.integers(len(rows))])
        item = codes, clips.variant_features[row], row, weight, clips.variant_captions[row]
        return (*item, own) if self.own_captions else item


def mix_codes(codes: np.ndarray, other: np.ndarray, below_db: float) -> np.ndarray:
    """mu-law ``codes`` with ``other`` mixed in ``below_db`` under their RMS level (both from their
    start; the result as long as the longer), peak-limited to full scale, as mu-law again."""
    front, back = mu_law_decode(codes), mu_law_decode(other)
    mixed = np.zeros(max(len(front), len(back)), np.float32)
    mixed[:len(front)] = front
    front_rms, back_rms = (float(np.sqrt(np.mean(part ** 2))) + 1e-8 for part in (front, back))
    mixed[:len(back)] += back * (front_rms / back_rms * 10 ** (-below_db / 20))
    peak = float(np.abs(mixed).max())
    return mu_law_encode(mixed / peak if peak > 1.0 else mixed)


def collate_crops(items, crop_samples: int, tokenize=None) -> dict[str, torch.Tensor]:
    """Pad every crop to ``crop_samples``: the model pools only over each clip's own frames.

    Captions enter as their packed features, or, given ``tokenize`` (captions ->
    (input_ids, attention_mask)) for a model whose text tower trains, as tokens.
    """
    codes = np.zeros((len(items), crop_samples), dtype=np.uint8)
    lengths = np.zeros(len(items), dtype=np.int64)
    for row, (clip_codes, *_) in enumerate(items):
        codes[row, :len(clip_codes)] = clip_codes
        lengths[row] = len(clip_codes)
    batch = {
        "codes": torch.from_numpy(codes),
        "lengths": torch.from_numpy(lengths),
        "caption_ids": torch.tensor([item[2] for item in items], dtype=torch.int64),
        "weights": torch.tensor([item[3] for item in items], dtype=torch.float32),
    }
    if len(items[0]) > 5:  # RandomCrops(own_captions=True)
        batch["own_rows"] = torch.from_numpy(np.stack([item[5] for item in items]))
    if tokenize is None:
        batch["text_features"] = torch.from_numpy(np.stack([item[1] for item in items]))
    else:
        batch["input_ids"], batch["attention_mask"] = tokenize([str(item[4]) for item in items])
    return batch


def decode_batch(codes: torch.Tensor, lengths: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """uint8 codes (batch, samples) -> float32 waveforms with exact silence after each clip."""
    waveforms = table[codes.long()]
    return waveforms * (torch.arange(codes.shape[1], device=codes.device)[None] < lengths[:, None])


class GlobalBatches(Sampler):
    """One shuffled order per epoch, cut into global batches; each rank takes its slice of each.

    Unlike DistributedSampler (which deals whole indices round-robin), every global batch is the
    same whatever the number of ranks, so the contrastive loss over the gathered batch, and so
    the run, is the same on one GPU or eight. The last incomplete batch is dropped: ranks must
    gather equal shares.
    """

    def __init__(self, size: int, batch_size: int, seed: int, rank: int = 0, world: int = 1):
        if batch_size % world:
            raise ValueError(f"batch size {batch_size} is not divisible by {world} processes")
        if size < batch_size:
            raise ValueError(f"{size} clips are fewer than one batch of {batch_size}")
        self.size, self.batch_size, self.seed, self.rank, self.world = size, batch_size, seed, rank, world
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size // self.batch_size

    def __iter__(self):
        order = np.random.default_rng([self.seed, self.epoch]).permutation(self.size)
        share = self.batch_size // self.world
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            yield order[start + self.rank * share:start + (self.rank + 1) * share].tolist()
