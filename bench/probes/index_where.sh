#!/usr/bin/env bash
# Where the lent machine's cores go during `clapdex index`, and which settings lift it: one call.
# Bundle (git-ignored, carried as one path): .carry/idx2/{run.sh (this script), steps.sh, main
# (the code measured), br (a branch), tools (cpu_sampler.py, index_where.py, spy_summary.py),
# wheels, esc10 (200 clips)}.
#   bash .carry/idx2/run.sh OUT            (PLAN=texts: what keyword texts cost, main beside BRANCH;
#                                          PLAN=idx3: branch idx3 against main, .carry/idx3;
#                                          PLAN=idx3b: its second call, br against br0 and main;
#                                          PLAN=dec: branch dec's decoding against main, .carry/dec)
# A: bench/index_library.py as it is (8,000 distinct clips, the official wrapper in the same
#    run), with cpu_sampler.py watching the main process, its threads, the decoders and readers.
# B: the same library indexed in one process under each variant in turn (worker counts, GPU
#    batch, checkpoints, files ahead, thread switching), each timed alone and sampled; one with
#    cProfile of the main thread, one with py-spy over every process.
# C: 600 60-s WAV recordings, sampled, and once under py-spy.
# Everything lands in a work folder, packed after each step into OUT/all.tar.gz beside
# OUT/summary.txt and OUT/log.txt (3 files: the call brings back at most 8). No step runs past
# TOTAL seconds from the start (default 460). Rehearse a copy: bash reads a script as it goes.
set -u
OUT=${1:-${OUT:?set OUT or pass it}}
mkdir -p "$OUT"
B=$(cd "$(dirname "$0")" && pwd)
CODE=${CODE:-$B/main}
TOOLS=$B/tools
AUDIO=${AUDIO:-$B/esc10}
COPIES=${COPIES:-40}
LONG_FILES=${LONG_FILES:-600}
PYTHON=${PYTHON:-python3}
DEVICE=${DEVICE:-}  # "--device cpu" for a rehearsal
SITE=${SITE:-/tmp/site}
TOTAL=${TOTAL:-460}
BATCH=${BATCH:-1024}  # the larger GPU batch tried (smaller in a rehearsal on a CPU)
SCALE=${SCALE:-1}  # the steps' limits times this (a slow rehearsal)
WORK=${WORK:-/tmp/idx2-work}
rm -rf "$WORK" && mkdir -p "$WORK"
export PYTHONUNBUFFERED=1
LOG=$WORK/log.txt
STARTED=$SECONDS
STEPS_OUT=$WORK
. "$B/steps.sh"
pack() { cp "$LOG" "$OUT/log.txt"; tar -czf "$OUT/all.tar.gz.part" -C "$WORK" . && mv "$OUT/all.tar.gz.part" "$OUT/all.tar.gz"; }
after_step() { pack; }

say "start: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), code $CODE"
{ nvidia-smi -L; nvidia-smi --query-gpu=clocks.sm,clocks.mem,temperature.gpu,utilization.gpu --format=csv
  "$PYTHON" --version; "$PYTHON" -c 'import torch, numpy; print(torch.__version__, numpy.__version__)'
  lscpu | grep -E "Model name|^CPU\(s\)|Thread|MHz"; free -g; } >> "$LOG" 2>&1
if [ -z "${SKIP_INSTALL:-}" ]; then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --target "$SITE" "$B"/wheels/*.whl >> "$LOG" 2>&1 \
    || say "pip install failed"
fi
export PYTHONPATH=$SITE PYSPY=${PYSPY:-$SITE/bin/py-spy}
"$PYTHON" -c 'import importlib
for name in ("numba", "scipy", "librosa", "msclap", "faiss", "sqlalchemy", "miniaudio", "soundfile", "mutagen"):
    try:
        print(name, getattr(importlib.import_module(name), "__version__", "?"))
    except Exception as exc:
        print(name, "MISSING", exc)' >> "$LOG" 2>&1
"$PYSPY" --version >> "$LOG" 2>&1 || say "py-spy does not run"


W="$PYTHON $TOOLS/index_where.py --root $CODE --interval 0.5"
WB="$PYTHON $TOOLS/index_where.py --root ${BRANCH:-$B/br} --interval 0.5"  # a branch's snapshot, like main/
CLIPS="--audio $AUDIO --copies $COPIES --distinct $DEVICE"
# The report of every step so far, then the last pack.
finish() {
  "$PYTHON" "$TOOLS/index_where.py" --report "$WORK" > "$OUT/summary.txt" 2>> "$LOG"
  if declare -F extra_summary > /dev/null; then extra_summary >> "$OUT/summary.txt" 2>> "$LOG"; fi
  cat "$OUT/summary.txt"
  say "done"
  pack
  exit 0
}
if [ "${PLAN:-where}" = dec ]; then
  # Branch dec (mono and stereo Ogg Vorbis decoded by stb_vorbis directly, channel by channel)
  # against main: do both decode every clip to the same samples here; the decoders' CPU a clip on
  # this machine's cores (decode_cost.py's pools, 16 workers, 2,000 clips, main then the branch);
  # the branch's bench with the official wrapper in the same run (the ratio); then index runs of
  # main and the branch alternating, each in a process of its own, the branch also with 8 files
  # ahead a decoder (decoders slept 39-54% of idx3's runs: waiting for files?).
  DC="$PYTHON $B/br/bench/probes/decode_cost.py --audio $AUDIO --copies ${DC_COPIES:-10} --pools-only"
  AHEAD8="ahead8:encoders.decoding.FILES_AHEAD=8"
  extra_summary() {
    "$PYTHON" - "$WORK" <<'PY'
import json, sys
from pathlib import Path
work = Path(sys.argv[1])
print("\ndecoder pools (decode_cost.py --pools-only): ms of CPU a clip")
print(f"{'run':<10}{'files':>7}{'files/s':>9}{'decoders':>10}{'kernel':>8}{'caller':>8}{'readers':>9}  load")
for path in sorted(work.glob("P_*.json"), key=lambda path: path.stat().st_mtime):
    d = json.loads(path.read_text())
    pool = d["decoders_cpu_ms_a_file"]
    print(f"{path.stem:<10}{d['files']:>7}{pool.get('files_per_second', 0):>9.0f}{pool['workers']:>10.2f}{pool.get('workers_kernel', 0):>8.2f}{pool['caller']:>8.2f}"
          f"{d['readers_workers_cpu_ms_a_file']:>9.2f}  {' '.join(d['load'])}")
compare = work / "D_compare.json"
if compare.exists():
    d = json.loads(compare.read_text())
    print(f"\nsamples, main against the branch: {d['files']} files, {d['differ']} differ; decoders {d['decoders']}")
PY
  }
  step 30 D_compare $PYTHON $B/br/bench/probes/decode_compare.py --root $B/main $AUDIO --out "$WORK/D_compare.json"
  step 40 P_main1 $DC --root $B/main --out "$WORK/P_main1.json"
  step 40 P_br1 $DC --root $B/br --out "$WORK/P_br1.json"
  step 100 A_bench $WB --bench --where "$WORK/A_where.json" -- $CLIPS --wrapper --out "$WORK/A_bench.json"
  step 45 T_main1 $W $CLIPS --out "$WORK/T_main1.json" --variant base
  step 50 T_br1 $WB $CLIPS --out "$WORK/T_br1.json" --variant base --variant $AHEAD8
  step 45 T_main2 $W $CLIPS --out "$WORK/T_main2.json" --variant base
  step 50 T_br2 $WB $CLIPS --out "$WORK/T_br2.json" --variant $AHEAD8 --variant base
  step 40 P_main2 $DC --root $B/main --out "$WORK/P_main2.json"
  step 40 P_br2 $DC --root $B/br --out "$WORK/P_br2.json"
  finish
fi
if [ "${PLAN:-where}" = idx3b ]; then
  # Branch idx3's second call: its texts written in steps between the decoders' pieces (br)
  # against the branch of the first call (br0: all at the scan's end) and main, alternating, each
  # in a process of its own; FILES_AHEAD=4 beside 2 (decoders waited for a file 44% of their time).
  WO="$PYTHON $TOOLS/index_where.py --root $B/br0 --interval 0.5"
  AHEAD4="ahead4:encoders.decoding.FILES_AHEAD=4"
  step 100 A_bench $WB --bench --where "$WORK/A_where.json" -- $CLIPS --wrapper --out "$WORK/A_bench.json"
  step 50 T_new1 $WB $CLIPS --out "$WORK/T_new1.json" --variant base --variant $AHEAD4
  step 40 T_old1 $WO $CLIPS --out "$WORK/T_old1.json" --variant base
  step 50 T_new2 $WB $CLIPS --out "$WORK/T_new2.json" --variant $AHEAD4 --variant base
  step 40 T_old2 $WO $CLIPS --out "$WORK/T_old2.json" --variant base
  step 40 T_main1 $W $CLIPS --out "$WORK/T_main1.json" --variant base
  finish
fi
if [ "${PLAN:-where}" = idx3 ]; then
  # Branch idx3 (the scan's keyword texts written together at its end) against main: the branch's
  # bench with the official wrapper in the same run (the ratio), then main and the branch
  # alternating, each in a process of its own; the branch without checkpoints and under py-spy
  # (what bounds it now); its recordings, eager and compiled, with what time is left.
  step 100 A_bench $WB --bench --where "$WORK/A_where.json" -- $CLIPS --wrapper --out "$WORK/A_bench.json"
  step 60 T_main1 $W $CLIPS --out "$WORK/T_main1.json" --variant base --variant base2
  step 60 T_branch1 $WB $CLIPS --out "$WORK/T_branch1.json" --variant base --variant base2
  step 45 T_main2 $W $CLIPS --out "$WORK/T_main2.json" --variant base
  step 60 T_branch2 $WB $CLIPS --out "$WORK/T_branch2.json" --variant ckpt:indexer.pipeline.CHECKPOINT_FILES=1000000 \
    --variant spy:spy
  step 150 L_branch $WB --audio "$AUDIO" --long-files $LONG_FILES --long-seconds 60 $DEVICE --out "$WORK/L_branch.json" \
    ${LONG_VARIANTS:---variant base --variant compiled:compile}
  finish
fi
if [ "${PLAN:-where}" = texts ]; then
  # What keyword texts cost the run: main (CODE) beside a branch (BRANCH, a snapshot like main/),
  # each in a process of its own, twice; the official wrapper with main's bench, for the ratio.
  step 100 A_bench $W --bench --where "$WORK/A_where.json" -- $CLIPS --wrapper --out "$WORK/A_bench.json"
  step 65 T_main1 $W $CLIPS --out "$WORK/T_main1.json" --variant base --variant notext:notext \
    --variant textsatend:textsatend --variant base2
  step 65 T_branch1 $WB $CLIPS --out "$WORK/T_branch1.json" --variant base --variant textsatend:textsatend \
    --variant notext:notext --variant base2
  # Recordings: the main thread was a third of a core busy in the first call; is the eager model the limit?
  step 100 L_compile $W --audio "$AUDIO" --long-files $LONG_FILES --long-seconds 60 $DEVICE --out "$WORK/L_compile.json" \
    ${LONG_VARIANTS:---variant base --variant compiled:compile}
  finish
fi
step 140 A_bench $W --bench --where "$WORK/A_where.json" -- --audio "$AUDIO" --copies $COPIES --distinct --wrapper \
  $DEVICE --out "$WORK/A_bench.json"
step 210 B_variants $W --audio "$AUDIO" --copies $COPIES --distinct $DEVICE --out "$WORK/B_variants.json" \
  --variant base --variant spy:spy --variant prof:profile --variant dec12:decoders=12 --variant dec20:decoders=20 \
  --variant rd4:readers=4 --variant ahead4:encoders.decoding.FILES_AHEAD=4 \
  --variant ckpt:indexer.pipeline.CHECKPOINT_FILES=1000000 --variant sw:switch=0.0005 \
  --variant b$BATCH:batch=$BATCH --variant dec14:decoders=14 --variant base2
step 90 C_long $W --audio "$AUDIO" --long-files $LONG_FILES --long-seconds 60 $DEVICE --out "$WORK/C_long.json" \
  --variant base --variant spy:spy --variant dec20:decoders=20

finish
