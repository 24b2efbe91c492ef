#!/usr/bin/env bash
# Train LAVAE and the baseline on every data set for the given seeds and ship each finished run to
# checkpoints/<model>_<data set>_<profile>_s<seed>/ (weights, metrics.csv, command.txt).
# Runs resume from runs/<run>/checkpoint.pt; each one logs to runs/<run>.log.
#
#   bash scripts/train_seeds.sh 2                    # cpu profile, seed 2, one run at a time
#   bash scripts/train_seeds.sh --jobs 6 2 3         # on a GPU: six runs share it
#   bash scripts/train_seeds.sh --profile paper --datasets multi-mnist-10k 0
#
# Options: --profile NAME (default cpu), --jobs N (runs at once, default 1: on a 2-core CPU
# parallel runs only slow each other down), --datasets "A B" (default all three), --models "A B"
# (default "lavae baseline"), --max-minutes M (passed to each run). PYTHON picks the interpreter
# (default .venv/bin/python, else python3); LAVAE_MNIST_DIR as in scripts/setup_env.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

profile=cpu jobs=1 max_minutes=""
datasets="multi-mnist-1k multi-mnist-10k multi-dsprites"
models="lavae baseline"
seeds=()
while [ "$#" -gt 0 ]; do
    case "$1" in
        --profile|--jobs|--datasets|--models|--max-minutes)
            [ "$#" -ge 2 ] || { echo "train_seeds.sh: $1 needs a value" >&2; exit 2; } ;;
    esac
    case "$1" in
        --profile) profile="$2"; shift ;;
        --jobs) jobs="$2"; shift ;;
        --datasets) datasets="$2"; shift ;;
        --models) models="$2"; shift ;;
        --max-minutes) max_minutes="$2"; shift ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        -*) echo "train_seeds.sh: unknown option $1" >&2; exit 2 ;;
        *) [[ "$1" =~ ^[0-9]+$ ]] || { echo "train_seeds.sh: seed must be an integer: $1" >&2; exit 2; }
           seeds+=("$1") ;;
    esac
    shift
done
[[ "$jobs" =~ ^[1-9][0-9]*$ ]] || { echo "train_seeds.sh: --jobs must be a positive integer: $jobs" >&2; exit 2; }
[ "${#seeds[@]}" -gt 0 ] || { echo "train_seeds.sh: give at least one seed" >&2; exit 2; }
if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
if [ -z "${LAVAE_MNIST_DIR:-}" ] && [ -d ../shared/data/mnist ]; then
    LAVAE_MNIST_DIR="$(cd ../shared/data/mnist && pwd)"   # as scripts/setup_env.sh does
fi
export PYTHON profile max_minutes LAVAE_MNIST_DIR="${LAVAE_MNIST_DIR:-}"
mkdir -p runs

one_run() {  # model dataset seed
    local run="$1_$2_${profile}_s$3"
    local extra=()
    [ -n "$max_minutes" ] && extra=(--max-minutes "$max_minutes")
    echo "[train_seeds] $(date '+%H:%M:%S') start $run"
    if "$PYTHON" -m lavae_core.train --profile "$profile" --ship --no-progress --dataset "$2" \
        --model "$1" --seed "$3" "${extra[@]}" > "runs/$run.log" 2>&1; then
        echo "[train_seeds] $(date '+%H:%M:%S') done  $run: $(tail -n1 "runs/$run.log")"
    else
        echo "[train_seeds] $(date '+%H:%M:%S') FAILED $run (runs/$run.log):" >&2
        tail -n 20 "runs/$run.log" >&2
        return 1
    fi
}
export -f one_run

for s in "${seeds[@]}"; do for d in $datasets; do for m in $models; do echo "$m $d $s"; done; done; done |
    xargs -P "$jobs" -L 1 bash -c 'one_run "$@"' _
