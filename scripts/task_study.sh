#!/usr/bin/env bash
# One MetaDrive task end to end with the README's recipe: `small` data of the default mixture,
# default labels, an `xs` world model (3,000 steps of 16 x 32), then scripts/compare_methods.sh
# (methods x training seeds, evaluated on the held-out episode seeds 700+, paired).
#   scripts/task_study.sh TASK OUT [WORKERS=1]
# Environment: as scripts/compare_methods.sh (METHODS, SEEDS, MODES, SEED_START), plus WM_STEPS
# (default 3000) and DATA (default data/TASK@metadrive-small). Every step is resumable.
set -euo pipefail
TASK=$1; OUT=$2; WORKERS=${3:-1}
VLSAFE=${VLSAFE:-.venv/bin/vlsafe}
DATA=${DATA:-data/$TASK@metadrive-small}
WM_STEPS=${WM_STEPS:-3000}
mkdir -p "$OUT"
"$VLSAFE" collect --task "$TASK" --preset small --workers "$WORKERS" --out "$DATA" > "$OUT/collect.log" 2>&1
"$VLSAFE" label "$DATA" --threads 1 > "$OUT/label.log" 2>&1
"$VLSAFE" data info "$DATA" > "$OUT/card.md"
"$VLSAFE" train-wm "$DATA" --preset xs --steps "$WM_STEPS" --out "$OUT/wm" --eval \
  --set seq_len=32 --set threads=1 > "$OUT/wm.log" 2>&1
"$(dirname "$0")/compare_methods.sh" "$OUT/wm" "$OUT/policies" 2000 20
