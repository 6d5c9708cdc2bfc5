#!/usr/bin/env bash
# The classifier experiments that need models of their own (issue 3): a model trained with one class held out
# (anomaly detection) and models that see 10 / 20 / 50 labels per class (low data), each with its baseline CNN,
# then one `cytomodel evaluate` over all of them.  Hours on 2 CPU cores, so it is resumable: run it again after an
# interruption (or in the next session) and finished stages are skipped, trainings continue from their checkpoint.
#
#   nohup bash scripts/run_classifier_experiments.sh > runs/classifier-experiments.log 2>&1 &
#
# Settings (environment): DATA (manifest or folder, default ../shared/data/pbc), RUNS (default
# runs/classifier-experiments), PRESET (cpu-32), STEPS (training steps per model, 6000), HOLDOUT (ig),
# LOW (space-separated labels per class, "10 20 50"; empty: none), PER_CLASS (evaluation images per class, 40),
# MODEL (the main model, data/models/cpu-32), BASELINE (its baseline CNN, data/models/baseline-32, or none), SHIFT (domain-shift data, ../shared/data/bccd_wbc if present);
# TRAIN_ARGS, BASELINE_ARGS, EVAL_ARGS: extra words for the trainings, the baselines and `evaluate`.
set -euo pipefail
cd "$(dirname "$0")/.."
CYTOMODEL=${CYTOMODEL:-.venv/bin/cytomodel}
DATA=${DATA:-../shared/data/pbc}
RUNS=${RUNS:-runs/classifier-experiments}
PRESET=${PRESET:-cpu-32}
STEPS=${STEPS:-6000}
HOLDOUT=${HOLDOUT:-ig}
LOW=${LOW-10 20 50}
PER_CLASS=${PER_CLASS:-40}
MODEL=${MODEL:-data/models/cpu-32}
BASELINE=${BASELINE:-data/models/baseline-32}
SHIFT=${SHIFT:-../shared/data/bccd_wbc}
read -r -a train_extra <<< "${TRAIN_ARGS:-}"
read -r -a baseline_extra <<< "${BASELINE_ARGS:-}"
read -r -a eval_extra <<< "${EVAL_ARGS:-}"
mkdir -p "$RUNS"

variant() {  # variant NAME ARGS...: baseline (once), then the diffusion model (fresh or resumed)
    local name=$1; shift
    local out=$RUNS/$name base=$RUNS/$name-baseline resume=()
    if [[ ! -f $base/baseline.json ]]; then
        echo "== $(date -u +%FT%TZ) baseline $name"
        "$CYTOMODEL" train-variant --data "$DATA" --split train "$@" --out "$out" --baseline-out "$base" \
            --baseline-only "${baseline_extra[@]}"
    fi
    if compgen -G "$out/checkpoints/step-*" > /dev/null; then resume=(--resume); fi
    echo "== $(date -u +%FT%TZ) diffusion model $name (${resume[*]:-fresh}, $STEPS steps)"
    "$CYTOMODEL" train-variant --data "$DATA" --split train "$@" --preset "$PRESET" --set "max_steps=$STEPS" \
        --out "$out" "${resume[@]}" "${train_extra[@]}"
}

variant "holdout-$HOLDOUT" --holdout-class "$HOLDOUT"
low_args=()
for n in $LOW; do
    variant "low$n" --labelled-per-class "$n"
    low_args+=(--low-data "$n:$RUNS/low$n/model:$RUNS/low$n-baseline")
done
shift_args=()
if [[ -e $SHIFT ]]; then shift_args=(--shift-data "$SHIFT"); fi
echo "== $(date -u +%FT%TZ) evaluate"
"$CYTOMODEL" evaluate --model "$MODEL" --baseline "$BASELINE" --data "$DATA" --per-class "$PER_CLASS" \
    --anomaly-model "$RUNS/holdout-$HOLDOUT/model" --anomaly-baseline "$RUNS/holdout-$HOLDOUT-baseline" \
    "${low_args[@]}" "${shift_args[@]}" "${eval_extra[@]}" --out "$RUNS/eval"
echo "== $(date -u +%FT%TZ) done: $RUNS/eval/results.md"
