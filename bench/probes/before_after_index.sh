#!/usr/bin/env bash
# `clapdex index` as bench/index_library.py runs it, main (B: `git archive main` unpacked in
# .carry/before) against this checkout (N), alternating in one call on the lent GPU, with the
# wheels the machine lacks in .carry/idx/wheels and 200 ESC-10 clips in .carry/idx/shared/data/esc10
# (docs/benchmarks.md, "Reproducing on the lent GPU"). From the repository root:
#   bash bench/probes/before_after_index.sh [clips|long|all] [OUT]
#   clips: 8,000 distinct 5-s clips, B N B N (the official wrapper in the first N run), then the
#          decoder and reader pools' CPU a file (B, N).
#   long:  600 60-s WAV recordings, B N B N, then every vector and header of a small library
#          (200 clips, 10 recordings) indexed by B and by N, compared (cosine).
# Each part is meant for a call of its own (about 5 minutes each); a step never runs past
# TOTAL seconds from the start (default 400), so the summary is always written.
# Each step has a time limit of its own and the next runs whatever became of it; results are
# JSON files in OUT, with summary.json last. Rehearse a copy of this file, not this file: bash
# reads a script as it goes, so editing it under a running shell breaks that run.
set -u
PART=${1:-all}
OUT=${2:-${OUT:?set OUT or pass it}}
mkdir -p "$OUT"
HERE=$(pwd)
B=$HERE/.carry/before
# Overridable for a rehearsal on a CPU: AUDIO, COPIES, LONG_FILES, WHEELS, PYTHON, DEVICE ("--device cpu"),
# VREC (recordings in the vectors library), SITE (where the wheels go), SCALE (time limits times this).
AUDIO=${AUDIO:-$HERE/.carry/idx/shared/data/esc10}
COPIES=${COPIES:-40}
LONG_FILES=${LONG_FILES:-600}
WHEELS=${WHEELS:-$HERE/.carry/idx/wheels}
PYTHON=${PYTHON:-python3}
DEVICE=${DEVICE:-}
SITE=${SITE:-/tmp/site}
SCALE=${SCALE:-1}  # the steps' time limits times this
export PYTHONUNBUFFERED=1
LOG=$OUT/log.txt
TOTAL=${TOTAL:-400}
STARTED=$SECONDS
STEPS_OUT=$OUT
. "$HERE/bench/probes/steps.sh"

say "start part=$PART $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
{ nvidia-smi -L; "$PYTHON" --version; "$PYTHON" -c 'import torch, numpy; print(torch.__version__, numpy.__version__)'; } >> "$LOG" 2>&1
"$PYTHON" -m pip install -q --no-index --no-deps --target "$SITE" "$WHEELS"/*.whl >> "$LOG" 2>&1 \
  || say "pip install failed"
export PYTHONPATH=$SITE
# What the official wrapper needs beyond the carried wheels (librosa imports numba and scipy).
"$PYTHON" -c 'import importlib
for name in ("numba", "scipy", "lazy_loader", "sklearn", "torchaudio", "librosa", "msclap", "faiss", "sqlalchemy", "miniaudio"):
    try:
        print(name, getattr(importlib.import_module(name), "__version__", "?"))
    except Exception as exc:
        print(name, "MISSING", exc)' >> "$LOG" 2>&1


if [ "$PART" = clips ] || [ "$PART" = all ]; then
  step 120 clipsB1 "$PYTHON" "$B/bench/index_library.py" --audio "$AUDIO" --copies $COPIES $DEVICE --distinct --out "$OUT/clipsB1.json"
  step 150 clipsN1 "$PYTHON" bench/index_library.py --audio "$AUDIO" --copies $COPIES $DEVICE --distinct --wrapper --out "$OUT/clipsN1.json"
  step 120 clipsB2 "$PYTHON" "$B/bench/index_library.py" --audio "$AUDIO" --copies $COPIES $DEVICE --distinct --out "$OUT/clipsB2.json"
  step 120 clipsN2 "$PYTHON" bench/index_library.py --audio "$AUDIO" --copies $COPIES $DEVICE --distinct --out "$OUT/clipsN2.json"
  step 60 costB "$PYTHON" bench/probes/decode_cost.py --root "$B" --audio "$AUDIO" --copies 10 --pools-only --out "$OUT/costB.json"
  step 60 costN "$PYTHON" bench/probes/decode_cost.py --audio "$AUDIO" --copies 10 --pools-only --out "$OUT/costN.json"
fi
if [ "$PART" = long ] || [ "$PART" = all ]; then
  for run in B1 N1 B2 N2; do
    case $run in B*) script=$B/bench/index_library.py ;; *) script=bench/index_library.py ;; esac
    step 120 long$run "$PYTHON" "$script" --audio "$AUDIO" --long-files $LONG_FILES $DEVICE --long-seconds 60 --out "$OUT/long$run.json"
  done
  rm -rf /tmp/idx-vectors && mkdir -p /tmp/idx-vectors
  step 60 vlib "$PYTHON" bench/probes/index_vectors.py --make-library /tmp/idx-vectors/lib --audio "$AUDIO" --recordings ${VREC:-10}
  step 90 vectorsB "$PYTHON" bench/probes/index_vectors.py --root "$B" --library /tmp/idx-vectors/lib --weights /tmp/idx-vectors/w $DEVICE --out "$OUT/vectorsB.npz"
  step 90 vectorsN "$PYTHON" bench/probes/index_vectors.py --library /tmp/idx-vectors/lib --weights /tmp/idx-vectors/w $DEVICE --out "$OUT/vectorsN.npz"
  step 30 vectors "$PYTHON" bench/probes/index_vectors.py --compare "$OUT/vectorsB.npz" "$OUT/vectorsN.npz" --out "$OUT/vectors.json"
  rm -f "$OUT"/vectors?.npz
fi

"$PYTHON" - "$OUT" > "$OUT/summary.json" 2>> "$LOG" <<'EOF'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
summary = {}
for path in sorted(out.glob("*.json")):
    if path.name == "summary.json":
        continue
    data = json.loads(path.read_text())
    if "first_run" in data:
        run = data["first_run"]
        summary[path.stem] = {key: run.get(key) for key in (
            "files_per_s", "windows_per_s", "seconds", "main_thread_cpu_seconds", "process_cpu_seconds",
            "workers_cpu_seconds", "scan_seconds", "vs_wrapper")}
        summary[path.stem]["workers_cpu_ms_a_file"] = 1000 * run["workers_cpu_seconds"] / data["files"]
        summary[path.stem]["date"] = data["date"]
        if "wrapper" in data:
            summary[path.stem]["wrapper"] = data["wrapper"]
            summary[path.stem]["wrapper_files_per_s"] = data["wrapper"].get("files_per_s")
    elif "decoders_cpu_ms_a_file" in data:
        summary[path.stem] = {"readers_cpu_ms_a_file": data["readers_workers_cpu_ms_a_file"],
                              "decoders_cpu_ms_a_file": data["decoders_cpu_ms_a_file"]}
    else:
        summary[path.stem] = data
wrapper = summary.get("clipsN1", {}).get("wrapper_files_per_s")
if wrapper:
    for name, row in summary.items():
        if name.startswith("clips"):
            row["vs_wrapper_same_call"] = row["files_per_s"] / wrapper
print(json.dumps(summary, indent=1))
EOF
cat "$OUT/summary.json"
say "done"
