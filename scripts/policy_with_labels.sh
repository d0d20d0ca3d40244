#!/usr/bin/env bash
# Does the policy hold with another label model? Relabel a dataset (a hard-linked copy, so the
# original's labels are untouched), retrain the world model with the main table's recipe (xs, 3,000
# steps of 16 x 32), then VL-SAFE with 3 training seeds on the development (500-519) and held-out
# (700-719) episode seeds, greedy. The README's rows pair each of these episodes with the same
# training seed and episode seed of the main table's v1-label runs.
#   scripts/policy_with_labels.sh DATA MODEL TAG      e.g. data/four-lane@metadrive-small drive-clip-v3 v3labels
set -euo pipefail
DATA=$1; MODEL=$2; TAG=$3
VLSAFE=${VLSAFE:-.venv/bin/vlsafe}
COPY="$DATA-$TAG"
if [[ ! -d $COPY ]]; then
  cp -al "$DATA" "$COPY.tmp" && rm -rf "$COPY.tmp/labels" && mv "$COPY.tmp" "$COPY"
fi
"$VLSAFE" label "$COPY" --model "$MODEL"
WM="runs/wm/$(basename "$DATA" | cut -d@ -f1)-$TAG"
"$VLSAFE" train-wm "$COPY" --preset xs --steps 3000 --out "$WM" --set batch_size=16 --set seq_len=32 \
  --set checkpoint_every=250 --set threads=1
SEED_START=500 METHODS="vl-safe" MODES=greedy scripts/compare_methods.sh "$WM" "runs/$TAG-dev" 2000 20
SEED_START=700 METHODS="vl-safe" MODES=greedy scripts/compare_methods.sh "$WM" "runs/$TAG" 2000 20
