#!/usr/bin/env bash
# clapdex-compact 2: the GPU call that carries the last part. Run from the repository root:
#   OUT=$OUT bash .carry/c2p_last/train.sh
# after .carry/c2p0 .. c2p3 (tar parts) arrived in earlier calls and .carry/c2w (wheels) and
# .carry/c2p_last (this script, index.npz, the training code it was packed with) in this one.
# Unpacks the Vorbis clips into shards, trains, and leaves the run folder in $OUT/run.
# Knobs (environment): EPOCHS (80; auto: what probe.py --write left in EPOCHS_FILE, /tmp/c2epochs,
# else EPOCHS_FALLBACK, 50), TRAIN_LIMIT (seconds, 480: past it a run is stopped and
# the best epoch so far is kept), BATCH (256), WORKERS (12, per run), UNPACK_WORKERS (16), PY
# (python3), TRAIN_ARGS (more options for training.train, e.g. "--model-config wide"),
# INDEX_DIR (the folder holding index.npz; default this script's: a later bundle of code
# alone reuses the index already carried), VARIANTS ("name:options|name:options": runs side
# by side on the one GPU, each with TRAIN_ARGS and its own options; default one run, "run"),
# EXTRA_PARTS (folders of more tar parts, relative to the repository root, besides .carry/c2p0..:
# a later bundle's new clips, e.g. ".carry/zs4p0"), RUNS (/tmp/c2runs: the run folders), BACK (the files of each run copied to $OUT/name; default
# clapdex-compact.safetensors log.jsonl call.json: at most 8 files come back from a call).
set -euo pipefail
ROOT=$(pwd)
HERE=$(cd "$(dirname "$0")" && pwd)
: "${OUT:?set OUT to the folder that comes back}"
PY=${PY:-python3}
EPOCHS=${EPOCHS:-80}
if [ "$EPOCHS" = auto ]; then  # as many as probe.py --write found to fit (an earlier call, same machine)
    EPOCHS=$(cat "${EPOCHS_FILE:-/tmp/c2epochs}" 2>/dev/null || echo "${EPOCHS_FALLBACK:-50}")
fi
echo "epochs: $EPOCHS"
TRAIN_LIMIT=${TRAIN_LIMIT:-480}
BATCH=${BATCH:-256}
WORKERS=${WORKERS:-12}
UNPACK_WORKERS=${UNPACK_WORKERS:-16}
DATA=${DATA:-/tmp/c2data}
INDEX_DIR=$(cd "${INDEX_DIR:-$HERE}" && pwd)
VARIANTS=${VARIANTS:-run:}
RUNS=${RUNS:-/tmp/c2runs}
BACK=${BACK:-clapdex-compact.safetensors log.jsonl call.json}
mkdir -p "$OUT"
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
for extra in ${EXTRA_PARTS:-}; do parts+=("$(cd "$ROOT" && cd "$extra" && pwd)"); done
echo "parts: ${parts[*]}"
# A second run in a warm machine reuses the clips the first one unpacked, if they came from the
# same index and parts (a warm machine may still hold another bundle's).
stamp="$(md5sum "$INDEX_DIR/index.npz" | cut -d' ' -f1) ${parts[*]}"
if [ "$(cat "$DATA/.unpacked" 2>/dev/null)" != "$stamp" ]; then
    rm -rf "$DATA"
    "$PY" -m training.pack unpack "$INDEX_DIR" "${parts[@]}" --out "$DATA" --workers "$UNPACK_WORKERS" \
        | tee "$OUT/unpack.json"
    echo "$stamp" > "$DATA/.unpacked"
fi
unpacked=$(date +%s)

train_one() {  # name, its own options: one run into $RUNS/name, its best epoch kept however it ends
    local name=$1 options=$2 run="$RUNS/$1" status=0
    rm -rf "$run"
    mkdir -p "$run"
    timeout --signal=TERM "$TRAIN_LIMIT" "$PY" -m training.train --shards "$DATA/train" \
        --val-shards "$DATA/validation" --out "$run" --epochs "$EPOCHS" --batch-size "$BATCH" \
        --workers "$WORKERS" --warmup-steps 100 --weight-decay 0.1 --freq-masks 2 --freq-width 8 \
        --time-masks 2 --time-width 50 --gain-db 6 --mixup 0.2 --background 0.2 ${TRAIN_ARGS:-} $options \
        > "$run/train.out" 2>&1 || status=$?
    local trained
    trained=$(date +%s)
    if [ "$status" -ne 0 ] && [ ! -e "$run/best.safetensors" ] && [ ! -e "$run/model.safetensors" ]; then
        echo "$name: training ended with status $status (124: past TRAIN_LIMIT) before its first epoch was saved"
    elif [ "$status" -ne 0 ]; then
        echo "$name: training ended with status $status (124: past TRAIN_LIMIT); keeping the best epoch so far"
        "$PY" -c "
import sys, torch
from pathlib import Path
from encoders.compact import read_compact, save_compact
run = Path(sys.argv[1])
chosen = run / 'best.safetensors' if (run / 'best.safetensors').exists() else run / 'model.safetensors'
save_compact(read_compact(chosen)[0], run / 'clapdex-compact.safetensors', torch.float16)
print('kept', chosen)" "$run"
    fi
    rm -f "$run/train_state.pt"
    cat > "$run/call.json" <<JSON
{"epochs": $EPOCHS, "train_status": $status, "unpack_seconds": $((unpacked - started)),
 "train_seconds": $((trained - unpacked)), "call_seconds": $(( $(date +%s) - started )),
 "train_args": "${TRAIN_ARGS:-} $options", "side_by_side": $(echo "$VARIANTS" | tr '|' '\n' | wc -l),
 "device": "$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 || echo cpu)"}
JSON
    mkdir -p "$OUT/$name"
    for file in $BACK; do
        if [ -e "$run/$file" ]; then cp "$run/$file" "$OUT/$name/"; fi
    done
}

pids=()
IFS='|' read -r -a variants <<< "$VARIANTS"
for variant in "${variants[@]}"; do
    train_one "${variant%%:*}" "${variant#*:}" &
    pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; done
for variant in "${variants[@]}"; do
    run="$RUNS/${variant%%:*}"
    echo "== ${variant%%:*}"
    cat "$run/call.json"
    grep -v '^{' "$run/train.out" | tail -n 5
    tail -n 2 "$run/log.jsonl" 2>/dev/null | cut -c1-400 || true
    ls -la "$run"
done
