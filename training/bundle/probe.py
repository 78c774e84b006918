"""How long a training step of clapdex-compact takes on this GPU, alone and with copies of itself
running side by side, on random data shaped like the corpus's (the real clips need not be there
yet, so it can run in a call that only uploads a part):

    python3 training/bundle/probe.py --side-by-side 2 --steps-per-epoch 38 --budget 520

prints one JSON line per process count, then the epochs each of ``--side-by-side`` runs can
train in ``--budget`` seconds: the epoch one run alone took on the real data (``--single-epoch``,
4.3 s for compact 2 ``base``) times the slowdown measured here, plus validation; at most
``--most``. ``--write FILE`` keeps that number for train.sh (``EPOCHS=auto``). Data loading
is not timed: the loader workers run on cores of their own.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.multiprocessing as mp
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from encoders.compact import CONFIGS, CompactClap  # noqa: E402
from training.train import contrastive_loss  # noqa: E402


def steps(device_name: str, config: str, batch: int, table: int, count: int, start, results, slot: int) -> None:
    device = torch.device(device_name)
    cuda = device.type == "cuda"
    model = CompactClap(CONFIGS[config]).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    samples = model.config.window_samples
    waveforms = torch.randn(batch, samples, device=device) * 0.1
    lengths = torch.randint(samples // 10, samples + 1, (batch,), device=device)
    features = F.normalize(torch.randn(batch, 384, device=device), dim=-1)
    captions = F.normalize(torch.randn(table, 384, device=device), dim=-1)
    ids = torch.arange(batch, device=device)

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            audio, text = model(waveforms, lengths, features)
            further = model.encode_text(captions) if table else None
        audio, text = F.normalize(audio.float(), dim=-1), F.normalize(text.float(), dim=-1)
        negatives = F.normalize(further.float(), dim=-1) if table else None
        excluded = torch.zeros(batch, table, dtype=torch.bool, device=device) if table else None
        loss = contrastive_loss(audio, text, ids, model.logit_scale, audio, text, ids, None, negatives, excluded)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(5):
        step()
    if cuda:
        torch.cuda.synchronize()
    start.wait()
    began = time.perf_counter()
    for _ in range(count):
        step()
    if cuda:
        torch.cuda.synchronize()
    results[slot] = (time.perf_counter() - began) / count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--side-by-side", type=int, default=2)
    parser.add_argument("--config", default="base")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--table", type=int, default=31121, help="captions contrasted as further negatives (0: none)")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--steps-per-epoch", type=int, default=38)
    parser.add_argument("--epoch-overhead", type=float, default=0.5, help="seconds of validation an epoch")
    parser.add_argument("--budget", type=float, default=480.0, help="seconds of training a run may take")
    parser.add_argument("--single-epoch", type=float, default=4.3, help="seconds an epoch took alone on the real data")
    parser.add_argument("--most", type=int, default=80)
    parser.add_argument("--write", help="file to write the number of epochs to")
    args = parser.parse_args()
    context = mp.get_context("spawn")
    seconds_a_step = {}
    for processes in sorted({1, args.side_by_side}):
        with context.Manager() as manager:
            results, start = manager.dict(), context.Barrier(processes)
            workers = [context.Process(target=steps, args=(args.device, args.config, args.batch, args.table, args.steps, start,
                                                            results, slot)) for slot in range(processes)]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()
            seconds = seconds_a_step[processes] = max(results.values())
        epoch = seconds * args.steps_per_epoch + args.epoch_overhead
        print(json.dumps({"processes": processes, "seconds_a_step": round(seconds, 4),
                          "seconds_an_epoch": round(epoch, 2), "epochs_in_budget": int(args.budget // epoch)}),
              flush=True)
    slowdown = seconds_a_step[args.side_by_side] / seconds_a_step[1]
    epochs = min(args.most, int(args.budget // (args.single_epoch * max(1.0, slowdown) + args.epoch_overhead)))
    print(json.dumps({"slowdown": round(slowdown, 2), "epochs": epochs}))
    if args.write:
        Path(args.write).write_text(f"{epochs}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
