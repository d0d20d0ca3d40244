#!/usr/bin/env bash
# The library baselines of the README's results table: every algorithm x training seed on one
# dataset (offline: d3rlpy; online: SB3 in the dataset's task), two processes at a time (one thread
# each), then each algorithm's seeds evaluated together on the held-out episode seeds (700+) that
# scripts/compare_methods.sh uses. Every step is resumable: rerunning skips finished work.
#   scripts/compare_baselines.sh DATASET OUT [EPISODES=20] [extra --set args...]
# Environment: ALGOS (default "bc cql iql ppo dqn sac"), SEEDS (default "0 1 2"), OFFLINE_STEPS
# (gradient steps, default 20000), ONLINE_STEPS (environment steps, default 50000).
set -euo pipefail
DATA=$1; OUT=$2; EPISODES=${3:-20}; shift $(( $# < 3 ? $# : 3 ))
VLSAFE=${VLSAFE:-.venv/bin/vlsafe}
ALGOS=${ALGOS:-"bc cql iql ppo dqn sac"}
SEEDS=${SEEDS:-"0 1 2"}
OFFLINE_STEPS=${OFFLINE_STEPS:-20000}
ONLINE_STEPS=${ONLINE_STEPS:-50000}
EXTRA="$*"
mkdir -p "$OUT"
export VLSAFE OUT DATA EPISODES EXTRA SEEDS OFFLINE_STEPS ONLINE_STEPS

train() {  # algo seed
  local run="$OUT/$1__s$2" steps=$OFFLINE_STEPS extra=""
  case $1 in ppo|dqn|sac) steps=$ONLINE_STEPS; extra="--set n_envs=1";; esac
  # shellcheck disable=SC2086
  "$VLSAFE" baseline train --algo "$1" --data "$DATA" --seed "$2" --steps "$steps" --out "$run" \
    --set threads=1 $extra $EXTRA > "$run.log" 2>&1
}
evaluate() {  # algo
  local runs=() out="$OUT/eval_$1_greedy"
  [[ -f "$out/eval.json" ]] && return 0
  for s in $SEEDS; do runs+=("$OUT/$1__s$s"); done
  "$VLSAFE" eval "${runs[@]}" --episodes "$EPISODES" --no-videos --out "$out" > "$out.log" 2>&1
}
export -f train evaluate

jobs=()
for s in $SEEDS; do for a in $ALGOS; do jobs+=("$a $s"); done; done
printf '%s\n' "${jobs[@]}" | xargs -P 2 -L 1 bash -c 'train $0 $1'
printf '%s\n' $ALGOS | xargs -P 2 -L 1 bash -c 'evaluate $0'
list=()
for a in $ALGOS; do list+=("$OUT/eval_${a}_greedy"); done
"$VLSAFE" compare "${list[@]}" --metrics Return,Cost,AS,TD,AR,CR | tee "$OUT/compare_greedy.md"
