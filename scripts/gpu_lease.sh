#!/usr/bin/env bash
# One command for a GPU lease (issue 9, part 2): advance the paper-profile runs kept in gpu_runs/.
#
#   bash scripts/gpu_lease.sh                      # on the GPU machine (the device tool's `run`)
#   bash scripts/gpu_lease.sh --unpack DIR         # here, afterwards: DIR = the files that came back
#
# In order, within --budget-minutes (default 7: a lease has 15 device minutes, start-up included,
# and a command at most 10; this leaves time to rerun after an early failure):
#   1. benchmark: eager and fast training steps side by side (scripts/benchmark.py --steps-only),
#      paper profile, batch 64, -> $OUT/benchmark_gpu_fast.json; the fastest variant (warm-up
#      phase) becomes the runs' execution switches (static_slots, compile, bf16), unless --speed;
#   2. train: the runs of --runs, in order (default: LAVAE on multi-MNIST-1k, its baseline, LAVAE on
#      multi-dSprites, its baseline, LAVAE on multi-MNIST-10k, its baseline), each resumed from
#      gpu_runs/<run>/checkpoint.pt, for the time left (python -m lavae_core.train --max-minutes:
#      it stops with a checkpoint); a finished run is shipped to checkpoints/<run>/ (weights,
#      metrics.csv, command.txt) and its full checkpoint dropped;
#   3. evaluate every run touched (python -m lavae_core.evaluate: K-sample bound, count accuracy);
#   4. pack each touched run folder into $OUT/<run>.tgz (with its shipped checkpoints/<run>/ if
#      finished), plus the benchmark JSON and lease.log: at most 8 files come back.
# Nothing is committed here: after the lease, `--unpack DIR` puts the runs back into gpu_runs/ (and
# checkpoints/), for a commit. A CPU-only session evaluates the latest state with
#   python -m lavae_core.evaluate gpu_runs/<run> --device cpu --n-images 200 --k 10
#
# Options: --budget-minutes M, --runs "model:dataset ...", --profile P (default paper), --seed S
# (default 0), --variants "V ..." (benchmark variants, first = reference; see scripts/benchmark.py),
# --no-bench, --speed "KEY=VALUE ..." (execution switches for the runs, instead of the benchmark's
# pick), --set "KEY=VALUE ..." (more config overrides, e.g. for a smoke test), --steps N,
# --eval-images N (default 500), --k K (default 100), --bench-steps N, --peak-tflops T (default 989:
# H100/H200 SXM dense bf16 datasheet), --state DIR (default gpu_runs), --out DIR (default $OUT, else
# lease_out). Environment: PYTHON (default .venv/bin/python if present, else python3).
# Data: the cached splits under data/ travel when the run's carry names them (e.g. carry
# ["data/multi-mnist-1k"]); a missing split is generated on the machine (multi-MNIST needs the
# MNIST files in data/mnist or $LAVAE_MNIST_DIR).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

budget=7 profile=paper seed=0 steps="" eval_images=500 k=100 bench=1 speed="" extra=""
bench_steps=10 peak=989 state=gpu_runs out="${OUT:-lease_out}" unpack=""
runs="lavae:multi-mnist-1k baseline:multi-mnist-1k lavae:multi-dsprites baseline:multi-dsprites lavae:multi-mnist-10k baseline:multi-mnist-10k"
variants="eager static static+bf16 static+bf16+compile static+bf16+reduce-overhead"
while [ "$#" -gt 0 ]; do
    case "$1" in
        --budget-minutes|--runs|--profile|--seed|--variants|--speed|--set|--steps|--eval-images|--k|\
        --bench-steps|--peak-tflops|--state|--out|--unpack)
            [ "$#" -ge 2 ] || { echo "gpu_lease.sh: $1 needs a value" >&2; exit 2; } ;;
    esac
    case "$1" in
        --budget-minutes) budget="$2"; shift ;;
        --runs) runs="$2"; shift ;;
        --profile) profile="$2"; shift ;;
        --seed) seed="$2"; shift ;;
        --variants) variants="$2"; shift ;;
        --no-bench) bench=0 ;;
        --speed) speed="$2"; shift ;;
        --set) extra="$2"; shift ;;
        --steps) steps="$2"; shift ;;
        --eval-images) eval_images="$2"; shift ;;
        --k) k="$2"; shift ;;
        --bench-steps) bench_steps="$2"; shift ;;
        --peak-tflops) peak="$2"; shift ;;
        --state) state="$2"; shift ;;
        --out) out="$2"; shift ;;
        --unpack) unpack="$2"; shift ;;
        -h|--help) sed -n '2,36p' "$0"; exit 0 ;;
        *) echo "gpu_lease.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi

if [ -n "$unpack" ]; then   # here, after the lease: put the runs back for a commit
    shopt -s nullglob
    tars=("$unpack"/*.tgz)
    [ "${#tars[@]}" -gt 0 ] || { echo "gpu_lease.sh: no .tgz in $unpack" >&2; exit 1; }
    mkdir -p "$state"
    for t in "${tars[@]}"; do tar -xzf "$t"; echo "unpacked $t"; done
    for f in "$unpack"/benchmark_gpu_fast.json "$unpack"/lease.log; do
        [ -e "$f" ] && cp "$f" "$state/" && echo "copied $f to $state/"
    done
    git status --short "$state" checkpoints | head -20
    exit 0
fi

mkdir -p "$out" "$state"
log="$out/lease.log"
t0=$(date +%s)
left() { "$PYTHON" -c "import sys; print(max(0.0, $budget - ($(date +%s) - $t0) / 60))"; }
say() { echo "[gpu_lease] $(date -u '+%H:%M:%S') $*" | tee -a "$log"; }
export PYTHONUNBUFFERED=1
say "budget ${budget} min; $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo 'no nvidia-smi')"
say "$("$PYTHON" -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available())')"
say "git $(git rev-parse --short HEAD 2>/dev/null || echo '?') $(git status --porcelain 2>/dev/null | wc -l) changed paths"

# ---- 1. benchmark, and the execution switches for the runs -----------------------------------
if [ "$bench" = 1 ]; then
    # shellcheck disable=SC2086
    if timeout 300 "$PYTHON" scripts/benchmark.py --profile "$profile" --steps-only $variants \
        --rounds 3 --steps "$bench_steps" --warmup 3 --peak-tflops "$peak" --phases warm-up \
        --out "$out/benchmark_gpu_fast.json" 2>&1 | tee -a "$log"; then
        if [ -z "$speed" ]; then
            speed="$("$PYTHON" - "$out/benchmark_gpu_fast.json" <<'EOF'
import json, sys
sys.path.insert(0, "scripts")
from benchmark import variant_config
from lavae_core.config import make_config
res = json.load(open(sys.argv[1]))
phase = res["phases"].get("warm-up") or res["phases"]["after-warm-up"]
ok = [v for v in phase if isinstance(phase[v], dict) and all(x for k, x in phase[v].items() if k.startswith("agrees_with_"))]
best = max(ok, key=lambda v: phase[v]["images_per_s"])   # the fastest that computes the same loss
cfg = variant_config(make_config(res["profile"]), best)
print(" ".join(f"{k}={json.dumps(getattr(cfg, k))}" for k in ("static_slots", "compile", "bf16")))
EOF
)"
            say "fastest variant -> $speed"
        fi
    else
        say "benchmark failed or timed out; the runs use the eager step"
    fi
fi

# ---- 2. train the runs in order, for the time left -------------------------------------------
touched=()
reserve=1.5   # minutes kept for evaluation and packing
for r in $runs; do
    model="${r%%:*}" dataset="${r#*:}"
    run="${model}_${dataset}_${profile}_s${seed}"
    dir="$state/$run"
    mins="$("$PYTHON" -c "print(round($(left) - $reserve, 2))")"
    if "$PYTHON" -c "import sys; sys.exit(0 if $mins >= 0.5 else 1)"; then :; else
        say "no time left for $run"; break
    fi
    if [ -e "$dir/finished" ]; then say "$run finished earlier"; continue; fi
    args=(--profile "$profile" --dataset "$dataset" --model "$model" --seed "$seed" --run-dir "$dir"
          --max-minutes "$mins" --no-progress)
    [ -n "$steps" ] && args+=(--steps "$steps")
    sets=($speed $extra)
    say "train $run for up to $mins min: ${sets[*]:-(defaults)}"
    touched+=("$run")
    mkdir -p "$dir"
    if ! "$PYTHON" -m lavae_core.train "${args[@]}" --set "${sets[@]}" > "$dir/train.log" 2>&1; then
        tail -n 20 "$dir/train.log" | tee -a "$log"
        say "$run failed with ${sets[*]:-defaults}; retrying with the eager step"
        mins="$("$PYTHON" -c "print(round($(left) - $reserve, 2))")"
        args[11]="$mins"
        # shellcheck disable=SC2086
        "$PYTHON" -m lavae_core.train "${args[@]}" --set static_slots=false compile=null bf16=false $extra \
            >> "$dir/train.log" 2>&1 || say "$run failed again"
    fi
    tail -n 1 "$dir/train.log" | tee -a "$log"
    if "$PYTHON" - "$dir" <<'EOF'
import sys, torch
from lavae_core.config import Config
c = torch.load(sys.argv[1] + "/checkpoint.pt", map_location="cpu", weights_only=True)
sys.exit(0 if c["step"] >= Config.from_dict(c["config"]).steps else 1)
EOF
    then
        "$PYTHON" -c "from lavae_core.checkpoint import ship_run; print(ship_run('$dir'))" | tee -a "$log"
        rm -f "$dir/checkpoint.pt" && touch "$dir/finished"
        say "$run finished: shipped to checkpoints/$run"
    else
        break   # the time is up inside this run: the later runs wait for the next lease
    fi
done

# ---- 3. evaluate, 4. pack --------------------------------------------------------------------
for run in "${touched[@]}"; do
    dir="$state/$run" src="$state/$run/checkpoint.pt"
    [ -e "$src" ] || src="checkpoints/$run/weights.pt"   # finished: shipped, full checkpoint dropped
    say "evaluate $run ($src)"
    timeout 120 "$PYTHON" -m lavae_core.evaluate "$src" --n-images "$eval_images" --k "$k" \
        --out "$dir/eval.json" > /dev/null 2>> "$log" || say "evaluation of $run failed"
    cp "$log" "$dir/lease.log"
    paths=("$dir")
    [ -d "checkpoints/$run" ] && [ -e "$dir/finished" ] && paths+=("checkpoints/$run")
    tar -czf "$out/$run.tgz" "${paths[@]}"
    say "packed $out/$run.tgz ($(du -h "$out/$run.tgz" | cut -f1))"
done
say "done in $(( ($(date +%s) - t0) / 60 )) min $(( ($(date +%s) - t0) % 60 )) s"
