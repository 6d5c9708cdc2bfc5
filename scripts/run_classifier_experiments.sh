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
# TRAIN_ARGS, BASELINE_ARGS, EVAL_ARGS, CLASSIFY_ARGS: extra words for the trainings, the baselines, `evaluate`
# and the triage stage's `classify`/`calibrate`;
# EVALUATE (1; 0 skips `evaluate`), TRIAGE (1; 0 skips triage of the test split by the held-out-class model and its
# baseline: where the cells of the class they never saw go — flagged, review or accepted).
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
EVALUATE=${EVALUATE:-1}
TRIAGE=${TRIAGE:-1}
read -r -a train_extra <<< "${TRAIN_ARGS:-}"
read -r -a baseline_extra <<< "${BASELINE_ARGS:-}"
read -r -a eval_extra <<< "${EVAL_ARGS:-}"
read -r -a classify_extra <<< "${CLASSIFY_ARGS:-}"
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
if [[ $EVALUATE != 0 ]]; then
    echo "== $(date -u +%FT%TZ) evaluate"
    "$CYTOMODEL" evaluate --model "$MODEL" --baseline "$BASELINE" --data "$DATA" --per-class "$PER_CLASS" \
        --anomaly-model "$RUNS/holdout-$HOLDOUT/model" --anomaly-baseline "$RUNS/holdout-$HOLDOUT-baseline" \
        "${low_args[@]}" "${shift_args[@]}" "${eval_extra[@]}" --out "$RUNS/eval"
    echo "== $(date -u +%FT%TZ) done: $RUNS/eval/results.md"
fi
if [[ $TRIAGE != 0 ]]; then
    # the held-out model's temperature is fitted on the val cells of its trained classes (as the bundled model's
    # was on val; `calibrate` leaves other labels out), and val's table rescored at it (no new UNet calls); triage
    # leaves val's held-out cells out of its fit
    t=$RUNS/triage-holdout-$HOLDOUT m=$RUNS/holdout-$HOLDOUT/model b=$RUNS/holdout-$HOLDOUT-baseline
    mkdir -p "$t"
    if [[ ! -f $t/diffusion_val.csv ]]; then
        echo "== $(date -u +%FT%TZ) classify val with the held-out model, fit its temperature"
        "$CYTOMODEL" classify --model "$m" --data "$DATA" --split val --out "$t/diffusion_val_T1.csv" --temperature 1 \
            "${classify_extra[@]}"
        "$CYTOMODEL" calibrate --model "$m" --data "$DATA" --split val --from-results "$t/diffusion_val_T1.csv" \
            --rescored-out "$t/diffusion_val.csv" "${classify_extra[@]}"
    fi
    echo "== $(date -u +%FT%TZ) classify test with the held-out model"
    "$CYTOMODEL" classify --model "$m" --data "$DATA" --split test --out "$t/diffusion_test.csv" "${classify_extra[@]}"
    for split in val test; do
        [[ -f $t/baseline_$split.csv ]] || "$CYTOMODEL" baseline predict --model "$b" --data "$DATA" --split "$split" \
            --out "$t/baseline_$split.csv"
    done
    "$CYTOMODEL" triage --calibration "$t/diffusion_val.csv" --cells "$t/diffusion_test.csv" \
        --compare "baseline=$t/baseline_val.csv,$t/baseline_test.csv" --held-out "$HOLDOUT" \
        --report-targets 0.01 0.02 --out "$t/out"
    echo "== $(date -u +%FT%TZ) done: $t/out/triage.json"
fi
