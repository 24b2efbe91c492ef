#!/usr/bin/env bash
# The bound against training steps, measured on a GPU lease (issues 8 and 11): the `cpu` recipe
# trained far past its 3,000 steps (its schedules are in steps and end by step 4,000; after that
# the run goes on at the final tau and learning rates), LAVAE and the baseline side by side, one
# process each, with a snapshot of the weights every --snapshot-every steps; then every
# snapshot's K-sample bound on the device (python -m lavae_core.curve, the same images and samples
# for every snapshot) and the final weights' evaluation (bound and counts, python -m
# lavae_core.evaluate). Everything comes back as one file, $OUT/curve.tgz.
#
#   bash scripts/gpu_curve.sh                    # on the GPU machine (the device tool's `run`)
#   bash scripts/gpu_curve.sh --unpack DIR       # here, afterwards: DIR = the files that came back
#
# Options: --minutes M (training time per run, all runs at once; default 6), --runs
# "model:dataset:seed[:KEY=VALUE,...] ..." (default LAVAE and the baseline on multi-MNIST-1k, seeds
# 0-2; a fourth field adds config overrides to that run only, after --set's, and names its folder,
# e.g. lavae:multi-dsprites:0:count_window=9 -> lavae_multi-dsprites_cpu_s0_count_window-9, so
# that two variants of one seed train side by side in one call),
# --profile P (default cpu), --steps N (cap, default 100000), --snapshot-every N (default 1000),
# --eval-every N (metrics.csv's evaluation, default 1000), --images N (curve images, default
# 1000), --k K (default 100), --threads T (CPU threads per process, default 2), --set "KEY=VALUE
# ..." (config overrides, replacing the default tf32=false: the CPU recipe's float32), --state
# DIR (default runs/gpu_curve), --out DIR (default $OUT, else curve_out), --keep-state 1 (also
# pack each run's training state, checkpoint.pt, so that the run can be resumed elsewhere with the
# same train command, e.g. on the CPU; default 0).
# Data: carry the cached split (e.g. carry ["data/multi-mnist-1k"]); a missing one is generated.
# Kept in the tarball per run: metrics.csv, config.json, command.txt, train.log, eval.json, the
# final weights (weights.pt, as shipped) and the snapshot at step 3,000 (the CPU budget); the other
# snapshots stay on the machine (their bounds are in the curve CSV).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

minutes=6 profile=cpu steps=100000 snap=1000 eval_every=1000 images=1000 k=100 threads=2
extra="tf32=false" state=runs/gpu_curve out="${OUT:-curve_out}" unpack="" keep_state=0
runs="lavae:multi-mnist-1k:0 lavae:multi-mnist-1k:1 lavae:multi-mnist-1k:2 baseline:multi-mnist-1k:0 baseline:multi-mnist-1k:1 baseline:multi-mnist-1k:2"
while [ "$#" -gt 0 ]; do
    case "$1" in
        -h|--help) sed -n '2,28p' "$0"; exit 0 ;;
    esac
    [ "$#" -ge 2 ] || { echo "gpu_curve.sh: $1 needs a value" >&2; exit 2; }
    case "$1" in
        --minutes) minutes="$2" ;;
        --runs) runs="$2" ;;
        --profile) profile="$2" ;;
        --steps) steps="$2" ;;
        --snapshot-every) snap="$2" ;;
        --eval-every) eval_every="$2" ;;
        --images) images="$2" ;;
        --k) k="$2" ;;
        --threads) threads="$2" ;;
        --set) extra="$2" ;;
        --state) state="$2" ;;
        --out) out="$2" ;;
        --unpack) unpack="$2" ;;
        --keep-state) keep_state="$2" ;;
        *) echo "gpu_curve.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift 2
done
[[ "$keep_state" =~ ^[01]$ ]] || { echo "gpu_curve.sh: --keep-state must be 0 or 1, got $keep_state" >&2; exit 2; }
specs=()   # every run's spec, checked and parsed once, before anything starts
for r in $runs; do
    IFS=: read -r model dataset seed sets rest <<< "$r"
    case "$model" in lavae|baseline) ;; *) echo "gpu_curve.sh: run $r: model must be lavae or baseline" >&2; exit 2 ;; esac
    [[ -n "$dataset" && "$seed" =~ ^[0-9]+$ && -z "$rest" ]] || { echo "gpu_curve.sh: run $r is not model:dataset:seed[:KEY=VALUE,...]" >&2; exit 2; }
    [[ -z "$sets" || "$sets" =~ ^[A-Za-z0-9_]+=[^,=]+(,[A-Za-z0-9_]+=[^,=]+)*$ ]] || { echo "gpu_curve.sh: run $r: overrides must be KEY=VALUE,KEY=VALUE" >&2; exit 2; }
    spec="$model $dataset $seed ${sets//,/ }"
    for seen in "${specs[@]}"; do
        [ "$seen" != "$spec" ] || { echo "gpu_curve.sh: run $r is given twice (both would train into one folder)" >&2; exit 2; }
    done
    specs+=("$spec")
done
if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi

if [ -n "$unpack" ]; then
    [ -e "$unpack/curve.tgz" ] || { echo "gpu_curve.sh: no curve.tgz in $unpack" >&2; exit 1; }
    tar -xzf "$unpack/curve.tgz" && echo "unpacked $unpack/curve.tgz into $state"
    exit 0
fi

mkdir -p "$out" "$state"
log="$state/curve.log"
say() { echo "[gpu_curve] $(date -u '+%H:%M:%S') $*" | tee -a "$log"; }
export PYTHONUNBUFFERED=1
t0=$(date +%s)
say "$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo 'no nvidia-smi')"
say "$("$PYTHON" -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available())')"
say "git $(git rev-parse --short HEAD 2>/dev/null || echo '?') $(git status --porcelain 2>/dev/null | wc -l) changed paths"

smi=""
if command -v nvidia-smi > /dev/null; then
    # appended: a second call on the same warm machine keeps the first call's load (one header each)
    nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -l 10 >> "$state/gpu_load.csv" 2>&1 &
    smi=$!
fi
dirs=() pids=()
for spec in "${specs[@]}"; do
    read -r model dataset seed sets <<< "$spec"
    dir="$state/${model}_${dataset}_${profile}_s${seed}"
    if [ -n "$sets" ]; then tag="${sets//=/-}"; dir="${dir}_${tag// /_}"; fi
    mkdir -p "$dir"
    dirs+=("$dir")
    say "train $dir for $minutes min (steps <= $steps, snapshot every $snap)"
    # shellcheck disable=SC2086
    OMP_NUM_THREADS=$threads "$PYTHON" -m lavae_core.train --profile "$profile" --dataset "$dataset" \
        --model "$model" --seed "$seed" --run-dir "$dir" --steps "$steps" --no-progress \
        --max-minutes "$minutes" --set snapshot_every="$snap" eval_every="$eval_every" $extra $sets \
        > "$dir/train.log" 2>&1 &
    pids+=($!)
done
wait "${pids[@]}"
[ -n "$smi" ] && kill "$smi" 2> /dev/null
for dir in "${dirs[@]}"; do say "$(tail -n 1 "$dir/train.log" | cut -c1-400)"; done

# every snapshot's bound and the final weights' evaluation, one process per run, side by side
pids=()
for dir in "${dirs[@]}"; do
    [ -e "$dir/checkpoint.pt" ] || { say "$dir has no checkpoint"; continue; }
    "$PYTHON" -c "from lavae_core.checkpoint import ship_weights; ship_weights('$dir/checkpoint.pt', '$dir/weights.pt')"
    ( OMP_NUM_THREADS=$threads "$PYTHON" -m lavae_core.curve "$dir" --out "$dir/curve.csv" \
          --images "$images" --k "$k" > "$dir/curve.log" 2>&1 || say "curve of $dir failed: $(tail -n 1 "$dir/curve.log")"
      OMP_NUM_THREADS=$threads "$PYTHON" -m lavae_core.evaluate "$dir/weights.pt" --bound-images 500 200 \
          --k "$k" --out "$dir/eval.json" > "$dir/eval.log" 2>&1 || say "evaluation of $dir failed: $(tail -n 1 "$dir/eval.log")" ) &
    pids+=($!)
done
[ "${#pids[@]}" -gt 0 ] && wait "${pids[@]}"
say "done in $(( ($(date +%s) - t0) / 60 )) min $(( ($(date +%s) - t0) % 60 )) s"
drop=(-name 'step_*.pt' ! -name step_003000.pt)              # snapshots but the 3,000-step one
[ "$keep_state" = 1 ] || drop=(-name checkpoint.pt -o "${drop[@]}")   # and the training state
find "$state" \( "${drop[@]}" \) > "$state/left_out.txt"
tar -czf "$out/curve.tgz" -X "$state/left_out.txt" "$state"
cp "$log" "$out/curve.log"
ls -la "$out"
