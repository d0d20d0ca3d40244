#!/usr/bin/env bash
# The method comparison of the README: every method x seeds 0 1 2 trained on one world model,
# two runs at a time (one thread each), then each method's three seeds evaluated together.
#   scripts/compare_methods.sh WM_RUN OUT [STEPS=600] [EPISODES=10] [extra --set args...]
set -euo pipefail
WM=$1; OUT=$2; STEPS=${3:-600}; EPISODES=${4:-10}; shift $(( $# < 4 ? $# : 4 ))
VLSAFE=${VLSAFE:-.venv/bin/vlsafe}
METHODS=${METHODS:-"vl-safe dreamer-offline lagrangian fosp"}
mkdir -p "$OUT"
n=0
for seed in 0 1 2; do
  for m in $METHODS; do
    "$VLSAFE" train-policy "$WM" --method "$m" --seed "$seed" --steps "$STEPS" --out "$OUT/${m}__s$seed" \
      --set threads=1 --set eval_every=400 --set eval_episodes=2 "$@" > "$OUT/${m}__s$seed.log" 2>&1 &
    n=$((n + 1)); if (( n % 2 == 0 )); then wait; fi
  done
done
wait
n=0
for m in $METHODS; do
  "$VLSAFE" eval "$OUT/${m}__s0" "$OUT/${m}__s1" "$OUT/${m}__s2" --episodes "$EPISODES" --out "$OUT/eval_$m" \
    > "$OUT/eval_$m.log" 2>&1 &
  n=$((n + 1)); if (( n % 2 == 0 )); then wait; fi
done
wait
cat "$OUT"/eval_*/eval.md
