#!/usr/bin/env bash
# The method comparison of the README on one world model: every method x training seeds, two
# processes at a time (one thread each), then each method's seeds evaluated together on the same
# held-out episode seeds (700+), greedy and sampled, behaviour cloning (each vl-safe run's π̂_b)
# beside them, and the paired differences to VL-SAFE.
#   scripts/compare_methods.sh WM_RUN OUT [STEPS=2000] [EPISODES=20] [extra --set args...]
# Environment: METHODS (default "vl-safe dreamer-offline lagrangian fosp"), SEEDS (default "0 1 2"),
# MODES (default "greedy sampled"), SEED_START (first episode seed, default 700; 500 = the development
# seeds to tune on), PAR (processes at a time, default 2). Every step is resumable: rerunning skips finished work.
set -euo pipefail
WM=$1; OUT=$2; STEPS=${3:-2000}; EPISODES=${4:-20}; shift $(( $# < 4 ? $# : 4 ))
VLSAFE=${VLSAFE:-.venv/bin/vlsafe}
METHODS=${METHODS:-"vl-safe dreamer-offline lagrangian fosp"}
SEEDS=${SEEDS:-"0 1 2"}
MODES=${MODES:-"greedy sampled"}
SEED_START=${SEED_START:-700}
EXTRA="$*"  # e.g. --set policy.lagrangian=true (no spaces inside one argument)
mkdir -p "$OUT"
export VLSAFE OUT WM STEPS EPISODES EXTRA SEEDS SEED_START

train() {  # method seed
  local run="$OUT/$1__s$2"  # a finished run resumes at its last step and stops at once
  # shellcheck disable=SC2086
  "$VLSAFE" train-policy "$WM" --method "$1" --seed "$2" --steps "$STEPS" --out "$run" \
    --set threads=1 --set eval_every=0 $EXTRA > "$run.log" 2>&1
}
evaluate() {  # method mode (method bc = the behaviour heads of the vl-safe runs)
  local name=$1 mode=$2 runs=() args=() out="$OUT/eval_$1_$2"
  [[ -f "$out/eval.json" ]] && return 0
  local src=$name; [[ $name == bc ]] && { src=vl-safe; args+=(--actor behaviour); }
  [[ $mode == sampled ]] && args+=(--sampled)
  for s in $SEEDS; do runs+=("$OUT/${src}__s$s"); done
  "$VLSAFE" eval "${runs[@]}" --episodes "$EPISODES" --seed-start "$SEED_START" --no-videos --out "$out" "${args[@]}" > "$out.log" 2>&1
}
export -f train evaluate

jobs=()
for s in $SEEDS; do for m in $METHODS; do jobs+=("$m $s"); done; done
printf '%s\n' "${jobs[@]}" | xargs -P "${PAR:-2}" -L 1 bash -c 'train $0 $1'
EXTRA_ROWS=""; [[ " $METHODS " == *" vl-safe "* ]] && EXTRA_ROWS="bc"  # bc = the vl-safe runs' π̂_b
evals=()
for mode in $MODES; do for m in $METHODS $EXTRA_ROWS; do evals+=("$m $mode"); done; done
printf '%s\n' "${evals[@]}" | xargs -P "${PAR:-2}" -L 1 bash -c 'evaluate $0 $1'
for mode in $MODES; do  # the first method is the reference of the differences (vl-safe by default)
  list=()
  for m in $METHODS $EXTRA_ROWS; do list+=("$OUT/eval_${m}_$mode"); done
  "$VLSAFE" compare "${list[@]}" --metrics Return,Cost,AS,TD,AR,CR | tee "$OUT/compare_$mode.md"
done
