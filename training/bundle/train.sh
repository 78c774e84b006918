#!/usr/bin/env bash
# clapdex-compact 2: the GPU call that carries the last part. Run from the repository root:
#   OUT=$OUT bash .carry/c2p_last/train.sh
# after .carry/c2p0 .. c2p3 (tar parts) arrived in earlier calls and .carry/c2w (wheels) and
# .carry/c2p_last (this script, index.npz, the training code it was packed with) in this one.
# Unpacks the Vorbis clips into shards, trains, and leaves the run folder in $OUT/run.
# Knobs (environment): EPOCHS (80), TRAIN_LIMIT (seconds, 480: past it the run is stopped and
# the best epoch so far is kept), BATCH (256), WORKERS (12), UNPACK_WORKERS (16), PY (python3),
# TRAIN_ARGS (more options for training.train, e.g. "--model-config wide").
set -euo pipefail
ROOT=$(pwd)
HERE=$(cd "$(dirname "$0")" && pwd)
: "${OUT:?set OUT to the folder that comes back}"
PY=${PY:-python3}
EPOCHS=${EPOCHS:-80}
TRAIN_LIMIT=${TRAIN_LIMIT:-480}
BATCH=${BATCH:-256}
WORKERS=${WORKERS:-12}
UNPACK_WORKERS=${UNPACK_WORKERS:-16}
DATA=${DATA:-/tmp/c2data}
RUN="$OUT/run"
mkdir -p "$RUN"
started=$(date +%s)

if ! "$PY" -c "import soundfile, miniaudio" 2>/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --target /tmp/c2site "$ROOT"/.carry/c2w/*.whl
    export PYTHONPATH=/tmp/c2site${PYTHONPATH:+:$PYTHONPATH}
fi
# The training code this bundle was packed and tested with, whatever the checkout holds:
# `python -m` puts the working folder first on the path, so run from the bundle's copy.
cd "$HERE/code"

parts=()
for part in "$ROOT"/.carry/c2p[0-9]*; do parts+=("$part"); done
echo "parts: ${parts[*]}"
# A second run in a warm machine reuses the clips the first one unpacked.
if [ ! -f "$DATA/.unpacked" ]; then
    rm -rf "$DATA"
    "$PY" -m training.pack unpack "$HERE" "${parts[@]}" --out "$DATA" --workers "$UNPACK_WORKERS" | tee "$RUN/unpack.json"
    touch "$DATA/.unpacked"
fi
unpacked=$(date +%s)

status=0
timeout --signal=TERM "$TRAIN_LIMIT" "$PY" -m training.train --shards "$DATA/train" --val-shards "$DATA/validation" \
    --out "$RUN" --epochs "$EPOCHS" --batch-size "$BATCH" --workers "$WORKERS" --warmup-steps 100 \
    --weight-decay 0.1 --freq-masks 2 --freq-width 8 --time-masks 2 --time-width 50 --gain-db 6 \
    --mixup 0.2 --background 0.2 ${TRAIN_ARGS:-} || status=$?
trained=$(date +%s)
if [ "$status" -ne 0 ] && [ ! -e "$RUN/best.safetensors" ] && [ ! -e "$RUN/model.safetensors" ]; then
    echo "training ended with status $status (124: past TRAIN_LIMIT) before its first epoch was saved: nothing to keep"
elif [ "$status" -ne 0 ]; then
    echo "training ended with status $status (124: past TRAIN_LIMIT); keeping the best epoch so far"
    "$PY" -c "
import sys, torch
from pathlib import Path
from encoders.compact import read_compact, save_compact
run = Path(sys.argv[1])
chosen = run / 'best.safetensors' if (run / 'best.safetensors').exists() else run / 'model.safetensors'
save_compact(read_compact(chosen)[0], run / 'clapdex-compact.safetensors', torch.float16)
print('kept', chosen)" "$RUN"
fi
rm -f "$RUN/train_state.pt"
cat > "$RUN/call.json" <<JSON
{"epochs": $EPOCHS, "train_status": $status, "unpack_seconds": $((unpacked - started)),
 "train_seconds": $((trained - unpacked)), "call_seconds": $(( $(date +%s) - started )),
 "train_args": "${TRAIN_ARGS:-}", "device": "$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 || echo cpu)"}
JSON
cat "$RUN/call.json"
tail -n 3 "$RUN/log.jsonl" 2>/dev/null || true
ls -la "$RUN"
