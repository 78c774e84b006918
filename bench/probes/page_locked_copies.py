"""Do pieces in the decoders' shared memory cross to the GPU as DMA once page-locked?

Decodes --seconds of noise written as a WAV file through the kept decoder pool, then times
copying each piece's span to a GPU buffer (copy stream, synchronised per piece, as
``encoders.batches`` does) from the shared memory as it is, after ``_PageLocked`` locks it, and
from a pinned buffer through a host copy (the way before). Prints GB/s and whether torch sees
the shared memory as pinned.

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
from encoders.batches import _PageLocked  # noqa: E402
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
        locked = _PageLocked()
        results = {"pageable": [0.0, 0], "page-locked": [0.0, 0], "through pinned": [0.0, 0]}
        for way in ("pageable", "page-locked", "through pinned", "pageable", "page-locked", "through pinned"):
            for piece in decode_windows(paths, 44100, 7.0, 3.5):
                span = piece.span
                if not len(span):
                    continue
                started = time.perf_counter()
                if way == "page-locked":
                    locked.lock(span)
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
                if way == "page-locked" and results[way][1] == span.nbytes:
                    print("shared memory seen as pinned:", source.is_pinned())
        locked.close()
        for way, (seconds, size) in results.items():
            print(f"{way}: {size / seconds / 1e9:.1f} GB/s ({size / 1e9:.2f} GB in {seconds:.2f} s)")


if __name__ == "__main__":
    main()
