"""Contrastive training (symmetric InfoNCE, learnt temperature) of clapdex-compact, and
fine-tuning of clapdex-compact or msclap-2023 (``--model``, ``--weights``, ``--freeze-audio``,
``--freeze-text``; ``training.models`` says how each is started and saved).

    python -m training.train --shards .carry/shards --eval-shards .carry/esc10 --out runs/a
    python -m training.train --manifest /work/corpus/manifest.jsonl --out runs/a   # packs first
    python -m training.train --manifest m.csv --model msclap-2023 --freeze-audio --out runs/b
    torchrun --nproc-per-node 8 -m training.train --shards ... --out ...         # DDP

Every epoch: loss, temperature, held-out corpus recall (``--val-shards``: the shipped copy is
the epoch that did best there) and, if given, ESC-10 numbers (``--eval-shards``, for measuring
only, never for choosing) appended to OUT/log.jsonl; the model's checkpoint (clapdex-compact:
OUT/model.safetensors, float32; msclap-2023: OUT/model.pth, official layout; each loads with
``load_encoder``) and OUT/train_state.pt (optimiser, epoch) rewritten, so ``--resume``
continues where the last epoch ended (``--stop-after`` splits a run over several time-limited
calls). At the end, OUT/clapdex-compact.safetensors (the float16 copy that ships) or
OUT/msclap-2023.pth holds the run's result. A manifest is packed into OUT/shards (again
when the manifest or the model's sample rate changes). Regularisation for a small
corpus: SpecAugment masks (``--freq-masks``/``--time-masks``), random gain (``--gain-db``),
in-batch mixup of clips and caption features (``--mixup``), a caption chosen each epoch among
the clip's packed variants, clips heard over a packed partner as "X with Y in the background"
(``--background``), per-clip loss weights from the
shards (speech and music count less), weight decay and projection dropout. Text-side levers
(shards with caption variants): ``--text-negatives`` contrasts each clip with every caption of
the packed table too, and ``--text-geometry`` keeps the projected captions' pairwise cosines
correlated with MiniLM's (docs/training.md, "Two objective levers", has what each gave).

Runs are seeded: batch order and crops depend on (seed, epoch) only, dropout is reseeded
every epoch, so a resumed run reproduces an uninterrupted one. Under torchrun each rank
takes its share of the same global batches, embeddings are gathered (with gradients) so
every clip is contrasted with the whole global batch, and batch norms are synchronised: the
run is the one-GPU run with the same --batch-size up to floating-point reduction order. One
GPU repeats itself bit for bit; on two H200s the per-epoch losses stayed within 0.3 % of the
one-GPU run over 3 epochs while the weights drifted apart (bf16 rounding, amplified by Adam
on near-zero gradients); tests/test_training.py checks the gathered gradient exactly on CPU.
On CUDA the towers run under bf16 autocast; the log-mel front end and the loss stay float32.

The loop talks to the model only through ``encode_audio(waveforms, lengths)``,
``encode_text(text_inputs)``, ``forward`` and ``logit_scale``; text inputs are the packed
caption features, or tokens made in the data loader for a model whose text tower trains
(msclap-2023: in-batch mixup, which mixes caption features, is then not available).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import math
import os
import sys
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.distributed.nn
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from encoders.compact import CONFIGS
from encoders.runtime import resolve_device
from training.data import (GlobalBatches, RandomCrops, collate_crops, decode_batch, mu_law_table,
                                    read_shards)
from training.evaluate import corpus_retrieval, evaluate_model
from training.models import MODELS, TRAINEES, freeze, train_mode

log = logging.getLogger(__name__)
MAX_LOGIT_SCALE = math.log(100.0)  # CLIP's clamp: temperature never below 0.01
STATE_FILE = "train_state.pt"
PACKED_FILE = "packed.json"  # beside the shards packed from a manifest: what they were packed from


@dataclass
class TrainConfig:
    out: str
    shards: str | None = None
    manifest: str | None = None
    eval_shards: str | None = None
    esc10: str | None = None
    model: str = "clapdex-compact"
    weights: str | None = None  # start from these (fine-tuning); clapdex-compact: else fresh, msclap-2023: else official
    model_config: str = "base"  # clapdex-compact started fresh
    freeze_audio: bool = False  # the tower and its projection keep their weights
    freeze_text: bool = False
    max_seconds: float = 10.0  # of each manifest row, when packing
    epochs: int = 30
    batch_size: int = 256  # global, over all ranks
    learning_rate: float = 1e-3
    weight_decay: float = 0.05
    warmup_steps: int = 200
    crop_seconds: float | None = None  # default: the model's window
    seed: int = 0
    workers: int = 4
    device: str = "auto"
    resume: bool = False
    stop_after: int | None = None  # end this invocation after that epoch; the schedule still spans `epochs`
    val_shards: str | None = None  # held-out corpus slice: model selection (best.safetensors) by its recall
    # Regularisation (the corpus is small): SpecAugment masks, random gain, in-batch mixup.
    freq_masks: int = 0
    freq_width: int = 8  # mel bins
    time_masks: int = 0
    time_width: int = 40  # frames (10 ms)
    gain_db: float = 0.0  # each crop's level moves by up to +-gain_db
    mixup: float = 0.0  # share of rows replaced by a mix of two clips and of their caption features
    background: float = 0.0  # share of clips heard with their packed partner: "X with Y in the background"
    # Text side (shards with caption variants): every caption of the packed table as a further
    # negative for each clip (audio to text), except captions of what the clip holds and those
    # whose MiniLM cosine with its caption exceeds negative_similarity (near-synonyms, not errors).
    text_negatives: bool = False
    negative_similarity: float = 0.8
    # Weight of a term keeping the projected captions' pairwise cosines correlated with MiniLM's
    # (1 - Pearson r over a sample of table captions each step): words never heard with a sound
    # keep the neighbours MiniLM gives them.
    text_geometry: float = 0.0
    geometry_sample: int = 1024


def contrastive_loss(audio: torch.Tensor, text: torch.Tensor, caption_ids: torch.Tensor, logit_scale: torch.Tensor,
                     all_audio: torch.Tensor, all_text: torch.Tensor, all_caption_ids: torch.Tensor,
                     weights: torch.Tensor | None = None, negatives: torch.Tensor | None = None,
                     excluded: torch.Tensor | None = None) -> torch.Tensor:
    """Symmetric InfoNCE of this rank's rows (unit-norm) against the gathered global batch.

    Clips that share a caption are all positives of each other (the target spreads evenly
    over them) rather than negatives the model would be pushed to tell apart. ``weights``
    (local rows) scale each row's share of the loss (speech and music count less).
    ``negatives`` (captions, dim), unit rows: further captions each clip is contrasted with
    (audio to text only), but for those ``excluded`` (local, captions) marks.
    """
    scale = logit_scale.exp()
    positives = (caption_ids[:, None] == all_caption_ids[None]).float()  # (local, global)
    targets = positives / positives.sum(dim=1, keepdim=True)
    audio_to_text = scale * audio @ all_text.T
    if negatives is not None:
        # A large finite logit rather than -inf: a zero target times -inf would be NaN.
        further = (scale * audio @ negatives.T).masked_fill(excluded, -1e4)
        audio_to_text = torch.cat([audio_to_text, further], dim=1)
        targets = F.pad(targets, (0, negatives.shape[0]))
    rows = 0.5 * (F.cross_entropy(audio_to_text, targets, reduction="none")
                  + F.cross_entropy(scale * text @ all_audio.T, targets[:, :all_text.shape[0]], reduction="none"))
    if weights is None:
        return rows.mean()
    return (rows * weights).sum() / weights.sum()


def excluded_negatives(text_features: torch.Tensor, caption_ids: torch.Tensor, all_caption_ids: torch.Tensor,
                       own_rows: torch.Tensor, table: torch.Tensor, similarity: float) -> torch.Tensor:
    """(local, table) True where a table caption must not be a row's negative: it is in the
    batch already (caption ids are table rows), it describes the clip (``own_rows``, -1 padded),
    its MiniLM cosine with the row's caption features passes ``similarity``, or the row is a
    mixup of two clips (its caption is no table row)."""
    excluded = F.normalize(text_features.float(), dim=-1) @ table.T > similarity
    excluded[:, all_caption_ids[all_caption_ids >= 0]] = True
    own = torch.zeros(len(excluded), table.shape[0] + 1, dtype=torch.bool, device=excluded.device)
    own.scatter_(1, torch.where(own_rows >= 0, own_rows, table.shape[0]), True)  # padding -> the extra column
    excluded |= own[:, :-1]
    excluded[caption_ids < 0] = True
    return excluded


def geometry_loss(projected: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """1 - Pearson r between the pairwise cosines of ``projected`` captions (unit rows) and of their
    MiniLM ``features``: zero when the projection keeps MiniLM's neighbourhoods, up to a scale."""
    pairs = torch.triu_indices(len(projected), len(projected), 1, device=projected.device)
    ours = (projected @ projected.T)[pairs[0], pairs[1]]
    minilm = (F.normalize(features.float(), dim=-1) @ F.normalize(features.float(), dim=-1).T)[pairs[0], pairs[1]]
    ours, minilm = ours - ours.mean(), minilm - minilm.mean()
    return 1 - (ours * minilm).sum() / (ours.norm() * minilm.norm() + 1e-8)


def augment(batch: dict[str, torch.Tensor], waveforms: torch.Tensor, config: TrainConfig, rank: int,
            generator: torch.Generator) -> torch.Tensor:
    """Random gain per crop, then in-batch mixup: a ``config.mixup`` share of the rows become
    lam * clip + (1 - lam) * another clip of the batch, lam ~ U(0.3, 0.7), with caption features
    mixed alike and a caption id of their own (a mix is nobody else's positive). In place on
    ``batch``; returns the waveforms."""
    rows, device = waveforms.shape[0], waveforms.device
    if config.gain_db:
        gain_db = (torch.rand(rows, 1, generator=generator) * 2 - 1) * config.gain_db
        waveforms = waveforms * (10 ** (gain_db / 20)).to(device)
    if config.mixup:
        mixed = torch.nonzero(torch.rand(rows, generator=generator) < config.mixup).flatten()
        if len(mixed):
            partners = torch.randint(0, rows, (len(mixed),), generator=generator)
            lam = (0.3 + 0.4 * torch.rand(len(mixed), 1, generator=generator)).to(device)
            mixed, partners = mixed.to(device), partners.to(device)
            waveforms = waveforms.clone()
            waveforms[mixed] = lam * waveforms[mixed] + (1 - lam) * waveforms[partners]
            text = batch["text_features"].float()
            text[mixed] = lam * text[mixed] + (1 - lam) * text[partners]
            batch["text_features"] = text
            batch["lengths"] = batch["lengths"].clone()
            batch["lengths"][mixed] = torch.maximum(batch["lengths"][mixed], batch["lengths"][partners])
            batch["caption_ids"] = batch["caption_ids"].clone()
            batch["caption_ids"][mixed] = -1 - (rank * rows + mixed)
            batch["weights"] = batch["weights"].clone()
            batch["weights"][mixed] = 0.5 * (batch["weights"][mixed] + batch["weights"][partners])
    return waveforms


def gather(tensor: torch.Tensor, with_grad: bool) -> torch.Tensor:
    """Rows of every rank, in rank order; gradients flow back to each rank's own rows."""
    if not dist.is_initialized():
        return tensor
    if with_grad:
        return torch.cat(torch.distributed.nn.functional.all_gather(tensor))
    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor)
    return torch.cat(parts)


def parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """No weight decay on norms, biases and the temperature (every tensor of fewer than 2 dims)."""
    decayed = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    plain = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    return [{"params": decayed, "weight_decay": weight_decay}, {"params": plain, "weight_decay": 0.0}]


def learning_rate(step: int, total: int, config: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to zero."""
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, total - config.warmup_steps)
    return config.learning_rate * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def seed_for(*parts: int) -> int:
    return int(np.random.SeedSequence(list(parts)).generate_state(1)[0])


def setup_distributed(device_name: str) -> tuple[int, int, torch.device]:
    """(rank, world size, device); under torchrun one process per GPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, resolve_device(device_name)
    local_rank = int(os.environ["LOCAL_RANK"])
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl", device_id=torch.device("cuda", local_rank))
        return dist.get_rank(), world, torch.device("cuda", local_rank)
    dist.init_process_group("gloo")
    return dist.get_rank(), world, torch.device("cpu")


def prepare_data(config: TrainConfig, rank: int, sample_rate: int) -> tuple[Path, Path | None]:
    """Shard folders for training and validation; a manifest (into OUT/shards) or ESC-10 folder
    is packed at ``sample_rate`` by rank 0, again only when its source or the rate changed."""
    shards = Path(config.shards) if config.shards else Path(config.out) / "shards"
    eval_shards = Path(config.eval_shards) if config.eval_shards else None
    if config.esc10 and not eval_shards:
        eval_shards = Path(config.out) / "cache" / f"esc10-{sample_rate}"
    if rank == 0:
        from training import pack

        if not config.shards:
            if not config.manifest:
                raise ValueError("Give --shards (packed) or --manifest (packed into OUT/shards first)")
            source = {"manifest_sha256": hashlib.sha256(Path(config.manifest).read_bytes()).hexdigest(),
                      "sample_rate": sample_rate, "max_seconds": config.max_seconds}
            if not (shards / PACKED_FILE).exists() or json.loads((shards / PACKED_FILE).read_text()) != source:
                (shards / PACKED_FILE).unlink(missing_ok=True)
                pack.pack_manifest(config.manifest, shards, sample_rate, config.max_seconds)
                (shards / PACKED_FILE).write_text(json.dumps(source))
        if config.esc10 and not config.eval_shards and not any(eval_shards.glob("*.npz")):
            pack.pack_esc10(config.esc10, eval_shards, sample_rate)
    if dist.is_initialized():
        dist.barrier()
    return shards, eval_shards


def train(config: TrainConfig) -> dict:
    """Train as ``config`` says; returns the last epoch's log record."""
    rank, world, device = setup_distributed(config.device)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    if config.model not in TRAINEES:
        raise ValueError(f"Unknown model {config.model!r}; trainable: {', '.join(MODELS)}")
    kind = TRAINEES[config.model]
    if config.resume:
        trainee = kind.resume(out)
        state = torch.load(out / STATE_FILE, map_location="cpu", weights_only=True)
        first_epoch = state["epoch"] + 1
    else:
        torch.manual_seed(config.seed)
        trainee, state, first_epoch = kind.start(config.weights, config.model_config), None, 1
    model, tokenize = trainee.model, trainee.tokenize
    if tokenize is not None and config.mixup:
        raise ValueError(f"--mixup mixes packed caption features; {config.model} reads captions as tokens")
    if tokenize is not None and (config.text_negatives or config.text_geometry):
        raise ValueError(f"--text-negatives and --text-geometry use packed caption features; {config.model} reads "
                         "captions as tokens")
    if not -1.0 <= config.negative_similarity <= 1.0:
        raise ValueError(f"--negative-similarity is a cosine, from -1 to 1, not {config.negative_similarity}")
    if config.text_geometry < 0 or config.geometry_sample < 2:
        raise ValueError("--text-geometry must be at least 0 and --geometry-sample at least 2")
    trainee.set_augmentation(config.freq_masks, config.freq_width, config.time_masks, config.time_width)
    frozen = freeze(model, config.freeze_audio, config.freeze_text)
    shards, eval_shards = prepare_data(config, rank, model.config.sample_rate)
    clips = read_shards(shards)
    eval_clips = read_shards(eval_shards) if eval_shards and rank == 0 else None
    val_clips = read_shards(config.val_shards) if config.val_shards and rank == 0 else None
    if clips.sample_rate != model.config.sample_rate:
        raise ValueError(f"Shards are {clips.sample_rate} Hz, the model takes {model.config.sample_rate} Hz")
    if len(clips) < config.batch_size:
        # A small library: one batch of everything (a whole number per process) rather than no run at all.
        log.warning("%d clips are fewer than a batch of %d; batches of %d instead", len(clips), config.batch_size,
                    len(clips) // world * world)
        config = dataclasses.replace(config, batch_size=len(clips) // world * world)
    model = model.to(device)
    crop_samples = round((config.crop_seconds or model.config.window_seconds) * model.config.sample_rate)
    if crop_samples > model.config.window_samples:
        raise ValueError(f"--crop-seconds must be at most the model's window ({model.config.window_seconds} s)")
    optimizer = torch.optim.AdamW(parameter_groups(model, config.weight_decay), lr=config.learning_rate)
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
    trained = model
    if world > 1:
        if device.type == "cuda":
            trained = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        trained = DistributedDataParallel(trained, device_ids=[device.index] if device.type == "cuda" else None)
    model_module = trained.module if world > 1 else trained

    dataset = RandomCrops(clips, crop_samples, config.seed, config.background, own_captions=config.text_negatives)
    caption_table = None
    if config.text_negatives or config.text_geometry:
        if clips.variant_features is None:
            raise ValueError("--text-negatives and --text-geometry need shards packed with caption variants "
                             "(pack index --captions)")
        caption_table = F.normalize(torch.from_numpy(clips.variant_features).float(), dim=-1).to(device)
    batches = GlobalBatches(len(dataset), config.batch_size, config.seed, rank, world)
    loader = DataLoader(dataset, batch_sampler=batches, num_workers=config.workers,
                        collate_fn=partial(collate_crops, crop_samples=crop_samples, tokenize=tokenize),
                        pin_memory=device.type == "cuda", persistent_workers=False)
    table = mu_law_table().to(device)
    total_steps = config.epochs * len(batches)
    step = state["step"] if state is not None else 0
    use_bf16 = device.type == "cuda"
    if rank == 0:
        log.info("%d clips (%.2f h), %d steps an epoch of %d, %d process(es) on %s", len(clips),
                 clips.lengths.sum() / clips.sample_rate / 3600, len(batches), config.batch_size, world, device)
    record: dict = {}
    best = state.get("best", -1.0) if state is not None else -1.0
    if rank == 0 and eval_clips is not None and state is None:
        record = {"epoch": 0, "eval": evaluate_model(model_module, eval_clips, device, tokenize=tokenize)}
        write_log(out, record)

    last_epoch = min(config.epochs, config.stop_after or config.epochs)
    for epoch in range(first_epoch, last_epoch + 1):
        train_mode(model_module, frozen)  # again each epoch: evaluation switches modes
        dataset.set_epoch(epoch)
        batches.set_epoch(epoch)
        torch.manual_seed(seed_for(config.seed, epoch, rank))
        generator = torch.Generator().manual_seed(seed_for(config.seed, epoch, rank, 1))
        sampler = torch.Generator().manual_seed(seed_for(config.seed, epoch, rank, 2))  # geometry samples
        started, losses = time.monotonic(), []
        for batch in loader:
            batch = {name: value.to(device, non_blocking=True) for name, value in batch.items()}
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(step, total_steps, config)
            waveforms = augment(batch, decode_batch(batch["codes"], batch["lengths"], table), config, rank, generator)
            text_inputs = (batch["input_ids"], batch["attention_mask"]) if tokenize else batch["text_features"].float()
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                audio = trained(waveforms, batch["lengths"], text_inputs)
                sample = (torch.randperm(len(caption_table), generator=sampler)[:config.geometry_sample].to(device)
                          if config.text_geometry else None)
                if config.text_negatives:
                    projected = model_module.encode_text(caption_table)
                elif config.text_geometry:
                    projected = model_module.encode_text(caption_table[sample])
            audio, text = (F.normalize(part.float(), dim=-1) for part in audio)
            all_caption_ids = gather(batch["caption_ids"], False)
            negatives = excluded = None
            if config.text_negatives:
                negatives = F.normalize(projected.float(), dim=-1)
                excluded = excluded_negatives(batch["text_features"], batch["caption_ids"], all_caption_ids,
                                              batch["own_rows"], caption_table, config.negative_similarity)
            loss = contrastive_loss(audio, text, batch["caption_ids"], model_module.logit_scale,
                                    gather(audio, True), gather(text, True), all_caption_ids, batch["weights"],
                                    negatives, excluded)
            if config.text_geometry:
                ours = negatives[sample] if config.text_negatives else F.normalize(projected.float(), dim=-1)
                loss = loss + config.text_geometry * geometry_loss(ours, caption_table[sample])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                model_module.logit_scale.clamp_(0, MAX_LOGIT_SCALE)
            losses.append(loss.detach())
            step += 1
        mean_loss = torch.stack(losses).mean()
        if world > 1:
            dist.all_reduce(mean_loss)
            mean_loss /= world
        seconds = time.monotonic() - started
        if rank == 0:
            record = {"epoch": epoch, "step": step, "loss": round(mean_loss.item(), 5),
                      "temperature": round(1 / model_module.logit_scale.exp().item(), 5),
                      "lr": learning_rate(step - 1, total_steps, config), "seconds": round(seconds, 1),
                      "clips_per_second": round(len(batches) * config.batch_size / seconds, 1)}
            if eval_clips is not None:
                record["eval"] = evaluate_model(model_module, eval_clips, device, tokenize=tokenize)
            if val_clips is not None:
                record["validation"] = corpus_retrieval(model_module, val_clips, device, tokenize=tokenize)
                if record["validation"]["mean_recall@10"] > best:
                    best = record["validation"]["mean_recall@10"]
                    record["best"] = True
                    trainee.save(out / trainee.best_file)
            write_log(out, record)
            trainee.save(out / trainee.last_file)
            save_state(out / STATE_FILE, {"epoch": epoch, "step": step, "optimizer": optimizer.state_dict(),
                                          "config": json.dumps(dataclasses.asdict(config)), "best": best})
    if rank == 0 and last_epoch == config.epochs:
        record["result"] = str(trainee.finish(out))
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
    return record


def write_log(out: Path, record: dict) -> None:
    line = json.dumps(record)
    log.info(line)
    with open(out / "log.jsonl", "a") as file:
        file.write(line + "\n")


def save_state(path: Path, state: dict) -> None:
    partial_path = path.with_name(path.name + ".partial")
    torch.save(state, partial_path)
    partial_path.replace(path)


def main(argv: list[str] | None = None) -> int:
    defaults = TrainConfig(out="")
    parser = argparse.ArgumentParser(prog="python -m training.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="run folder: checkpoints and log.jsonl")
    data = parser.add_mutually_exclusive_group(required=True)
    data.add_argument("--shards", help="folder of packed training shards (training.pack)")
    data.add_argument("--manifest", help="JSONL or CSV manifest (audio, caption, optional start/end), packed into "
                      "OUT/shards on first use")
    parser.add_argument("--max-seconds", type=float, default=defaults.max_seconds,
                        help="with --manifest: keep at most this much of each row")
    parser.add_argument("--model", default=defaults.model, choices=MODELS)
    parser.add_argument("--weights", help="start from this checkpoint (clapdex-compact: else freshly initialised; "
                        "msclap-2023: else the official weights)")
    parser.add_argument("--freeze-audio", action="store_true", help="keep the audio tower and its projection as they are")
    parser.add_argument("--freeze-text", action="store_true", help="keep the text tower and its projection as they are")
    validation = parser.add_mutually_exclusive_group()
    validation.add_argument("--eval-shards", help="folder of packed ESC-10 shards")
    validation.add_argument("--esc10", help="ESC-10 folder, packed into OUT/cache/esc10 on first use")
    parser.add_argument("--val-shards", help="held-out corpus shards: best.safetensors and the shipped copy are the "
                        "epoch with the best mean recall@10 on them")
    parser.add_argument("--freq-masks", type=int, default=defaults.freq_masks, help="SpecAugment mel-band masks")
    parser.add_argument("--freq-width", type=int, default=defaults.freq_width)
    parser.add_argument("--time-masks", type=int, default=defaults.time_masks, help="SpecAugment frame masks")
    parser.add_argument("--time-width", type=int, default=defaults.time_width)
    parser.add_argument("--gain-db", type=float, default=defaults.gain_db, help="random level change per crop")
    parser.add_argument("--mixup", type=float, default=defaults.mixup, help="share of rows mixed with another clip")
    parser.add_argument("--background", type=float, default=defaults.background,
                        help="share of clips mixed with their packed partner quieter, captioned 'X with Y in the "
                        "background' (shards from pack index --backgrounds)")
    parser.add_argument("--text-negatives", action="store_true",
                        help="every caption of the packed table is a further negative for each clip (audio to text), "
                        "but the clip's own captions and near-synonyms (--negative-similarity)")
    parser.add_argument("--negative-similarity", type=float, default=defaults.negative_similarity,
                        help="MiniLM cosine with a clip's caption above which a table caption is not its negative")
    parser.add_argument("--text-geometry", type=float, default=defaults.text_geometry,
                        help="weight of keeping projected captions' pairwise cosines correlated with MiniLM's")
    parser.add_argument("--geometry-sample", type=int, default=defaults.geometry_sample,
                        help="table captions sampled per step for --text-geometry")
    parser.add_argument("--model-config", default=defaults.model_config, choices=sorted(CONFIGS))
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size, help="global, over all processes")
    parser.add_argument("--learning-rate", type=float, default=defaults.learning_rate)
    parser.add_argument("--weight-decay", type=float, default=defaults.weight_decay)
    parser.add_argument("--warmup-steps", type=int, default=defaults.warmup_steps)
    parser.add_argument("--crop-seconds", type=float, help="longest training crop (default: the model's window)")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--workers", type=int, default=defaults.workers, help="data loader processes per GPU")
    parser.add_argument("--device", default=defaults.device, help="auto, cpu, cuda")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out after its last epoch")
    parser.add_argument("--stop-after", type=int, metavar="EPOCH",
                        help="end this invocation after EPOCH (to fit a time limit); continue with --resume")
    args = vars(parser.parse_args(argv))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    train(TrainConfig(**args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
