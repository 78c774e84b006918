#!/usr/bin/env bash
# Lay out the compact-2 GPU bundle from a `python -m training.pack index` folder:
#   bash training/bundle/make.sh PACK_DIR CARRY_DIR WHEELS_DIR
# CARRY_DIR/c2pN holds part-N.tar (one call each); CARRY_DIR/c2p_last holds index.npz,
# train.sh and a copy of the training code (training/, encoders/ without weights);
# CARRY_DIR/c2w the wheels from WHEELS_DIR of what the code imports and the GPU image lacks:
# soundfile (decodes the clips), miniaudio (encoders.audio imports it, and every encoders module
# imports encoders.audio), and cffi and pycparser, which both need.
#   bash training/bundle/make.sh --code FOLDER
# lays out train.sh and the code alone in FOLDER (a megabyte): a later call with new training
# code, run as INDEX_DIR=.carry/c2p_last OUT=$OUT bash .carry/FOLDER/train.sh, reuses the
# parts, the index and the wheels the first bundle carried.
#   bash training/bundle/make.sh --more PACK_DIR CARRY_DIR NAME
# lays out a bundle that adds clips to the first one (PACK_DIR from `pack index --packed
# c2p_last/index.npz`, whose parts hold only the new clips): CARRY_DIR/NAMEpN the new parts,
# CARRY_DIR/NAME_last the index of all clips, train.sh and the code; the first bundle's parts
# and wheels are reused. Run as EXTRA_PARTS=".carry/NAMEp0 ..." OUT=$OUT bash .carry/NAME_last/train.sh.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
code() {  # train.sh and a copy of the training code into $1
    mkdir -p "$1/code"
    cp "$REPO/training/bundle/train.sh" "$1/"
    (cd "$REPO" && tar cf - --exclude=__pycache__ --exclude='*.safetensors' training encoders) | tar xf - -C "$1/code"
}
if [ "${1:-}" = "--code" ]; then
    DEST=${2:?folder}
    rm -rf "$DEST"
    code "$DEST"
    du -sh "$DEST"
    exit 0
fi
if [ "${1:-}" = "--more" ]; then
    PACK=${2:?pack folder}; CARRY=${3:?carry folder}; NAME=${4:?bundle name}
    rm -rf "$CARRY/$NAME"p[0-9]* "$CARRY/${NAME}_last"
    for tar in "$PACK"/part-*.tar; do
        number=${tar##*/part-}; number=${number%.tar}
        mkdir -p "$CARRY/${NAME}p$number"
        cp "$tar" "$CARRY/${NAME}p$number/"
    done
    code "$CARRY/${NAME}_last"
    cp "$PACK/index.npz" "$CARRY/${NAME}_last/"
    du -sh "$CARRY/$NAME"p[0-9]* "$CARRY/${NAME}_last"
    exit 0
fi
PACK=${1:?pack folder}; CARRY=${2:?carry folder}; WHEELS=${3:?wheels folder}
rm -rf "$CARRY"/c2p[0-9]* "$CARRY/c2p_last" "$CARRY/c2w"
for tar in "$PACK"/part-*.tar; do
    number=${tar##*/part-}; number=${number%.tar}
    mkdir -p "$CARRY/c2p$number"
    cp "$tar" "$CARRY/c2p$number/"
done
mkdir -p "$CARRY/c2w"
code "$CARRY/c2p_last"
cp "$PACK/index.npz" "$CARRY/c2p_last/"
cp "$WHEELS"/soundfile-*.whl "$WHEELS"/miniaudio-*.whl "$WHEELS"/cffi-*.whl "$WHEELS"/pycparser-*.whl "$CARRY/c2w/"
du -sh "$CARRY"/c2p* "$CARRY/c2w"
