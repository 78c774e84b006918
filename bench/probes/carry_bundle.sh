#!/usr/bin/env bash
# Build the bundle a device call carries for index_where.sh (PLAN=idx3 / idx3b), from this
# checkout's git history: .carry/NAME/{main,br,br0} (git archive of each revision, trimmed of
# what an index run does not need: results, docs, UI, server, training, the compact weights,
# tests but the bench's helpers), tools/ and run.sh from this checkout, and the wheels and the
# 200 ESC-10 clips from an earlier bundle (py-spy's wheel left out unless SPY=1).
#   [FROM=.carry/idx2] [SPY=1] bash bench/probes/carry_bundle.sh NAME MAIN_REV BRANCH_REV [BR0_REV]
# The bundle and the tracked tree together must stay within a call's 64 MiB.
set -eu
NAME=$1 MAIN=$2 BRANCH=$3 BR0=${4:-} FROM=${FROM:-.carry/idx2}
REPO=$(git rev-parse --show-toplevel)
D=$REPO/.carry/$NAME
case $FROM in /*) ;; *) FROM=$REPO/$FROM ;; esac
snapshot() {  # snapshot REV DEST
  rm -rf "$2" && mkdir -p "$2"
  git -C "$REPO" archive "$1" | tar -x -C "$2"
  (cd "$2" && rm -rf bench/results ui training server docs .ci Dockerfile docker-compose.yml \
      encoders/models/clapdex-compact.safetensors
   find tests -mindepth 1 -maxdepth 1 ! -name checkpoints.py ! -name parity ! -name data ! -name conftest.py \
     ! -name libraries.py ! -name postgres.py ! -name processes.py ! -name sounds.py -exec rm -rf {} +
   find tests/data -mindepth 1 -maxdepth 1 ! -name gpt2-tokenizer ! -name README.md -exec rm -rf {} +)
}
rm -rf "$D" && mkdir -p "$D/tools" "$D/wheels"
snapshot "$MAIN" "$D/main"
snapshot "$BRANCH" "$D/br"
[ -n "$BR0" ] && snapshot "$BR0" "$D/br0"
cp -a "$FROM/esc10" "$D/"
for wheel in "$FROM"/wheels/*.whl; do
  case $(basename "$wheel") in py_spy*) [ "${SPY:-0}" = 1 ] && cp "$wheel" "$D/wheels/" ;; *) cp "$wheel" "$D/wheels/" ;; esac
done
cp "$REPO"/bench/probes/{cpu_sampler.py,index_where.py,spy_summary.py} "$D/tools/"
cp "$REPO/bench/probes/index_where.sh" "$D/run.sh"
cp "$REPO/bench/probes/steps.sh" "$D/steps.sh"
echo "$D: $(du -sb "$D" | cut -f1) bytes; tracked tree $(git -C "$REPO" archive HEAD | wc -c) bytes"
