"""Do pieces in the decoders' shared memory cross to the GPU faster once page-locked?

First, cudaHostRegister's answer for each flag on a fresh shared anonymous map (as the
decoders' slots are) and whether torch then sees it as pinned. Then decodes eight 60-s WAV
files through the kept decoder pool, twice, and times copying each piece's span to a GPU
buffer (copy stream, synchronised per piece, as ``encoders.batches`` does): from the shared
memory as it is (pageable), after registering the decoder's whole map, and through a pinned
host buffer (the way before 2026-12-04). Prints GB/s.

    python bench/probes/page_locked_copies.py
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from encoders.decoding import decode_windows, start_workers  # noqa: E402


def register_codes() -> None:
    """cudaHostRegister's answer for each flag on a fresh shared anonymous map, as the decoders' slots are."""
    import mmap
    import threading

    for flags in (0, 1, 2, 3):
        memory = np.frombuffer(mmap.mmap(-1, 4 * 7 * 48000 * 8 * 4), np.float32)
        codes = []
        thread = threading.Thread(target=lambda: codes.append(
            int(torch.cuda.cudart().cudaHostRegister(memory.ctypes.data, memory.nbytes, flags))))
        thread.start()
        thread.join()
        pinned = torch.from_numpy(memory).is_pinned() if codes == [0] else None
        print(f"flags {flags}: cudaError {codes}; torch sees it pinned: {pinned}")
        if codes == [0]:
            torch.cuda.cudart().cudaHostUnregister(memory.ctypes.data)


def lock(span: np.ndarray, registered: dict) -> bool:
    """Registers the decoder's map that ``span`` lies in, once; whether torch now sees it pinned."""
    owner = span
    while isinstance(owner.base, np.ndarray):
        owner = owner.base
    if owner.ctypes.data not in registered:
        registered[owner.ctypes.data] = int(torch.cuda.cudart().cudaHostRegister(owner.ctypes.data, owner.nbytes, 0))
    return torch.from_numpy(span).is_pinned()


def main() -> None:
    torch.cuda.init()
    register_codes()
    start_workers()
    with tempfile.TemporaryDirectory() as folder:
        paths = []
        for number in range(8):
            paths.append(Path(folder) / f"take{number}.wav")
            soundfile.write(paths[-1], 0.1 * np.random.default_rng(number).standard_normal(44100 * 60), 44100)
        device = torch.device("cuda")
        target = torch.empty(64 * 7 * 48000, device=device)
        stream = torch.cuda.Stream(device)
        staging = torch.empty(64 * 7 * 48000, pin_memory=True)
        registered: dict[int, int] = {}
        results = {"pageable": [0.0, 0], "page-locked": [0.0, 0], "through pinned": [0.0, 0]}
        for way in ("pageable", "page-locked", "through pinned", "pageable", "page-locked", "through pinned"):
            for piece in decode_windows(paths, 44100, 7.0, 3.5):
                span = piece.span
                if not len(span):
                    continue
                started = time.perf_counter()
                if way == "page-locked" and not lock(span, registered):
                    raise SystemExit(f"a decoder's map was not page-locked: cudaError {registered}")
                if way == "through pinned":
                    staging.numpy()[: len(span)] = span
                    source = staging[: len(span)]
                else:
                    source = torch.from_numpy(span)
                with torch.cuda.stream(stream):
                    target[: len(span)].copy_(source, non_blocking=True)
                stream.synchronize()
                results[way][0] += time.perf_counter() - started
                results[way][1] += span.nbytes
        for address, code in registered.items():
            if code == 0:
                torch.cuda.cudart().cudaHostUnregister(address)
        for way, (seconds, size) in results.items():
            print(f"{way}: {size / seconds / 1e9:.1f} GB/s ({size / 1e9:.2f} GB in {seconds:.2f} s)")


if __name__ == "__main__":
    main()
