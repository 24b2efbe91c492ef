#!/usr/bin/env bash
# One command for a GPU lease (issue 9, part 2): advance the paper-profile runs kept in gpu_runs/.
#
#   bash scripts/gpu_lease.sh                      # on the GPU machine (the device tool's `run`)
#   bash scripts/gpu_lease.sh --unpack DIR         # here, afterwards: DIR = the files that came back
#
# In order, within --budget-minutes (default 9: a lease has 15 device minutes, start-up included,
# and a command at most 10):
#   1. benchmark, two passes: the quick variants (--variants: eager, static slots, bf16) and then
#      the compiled ones (--compile-variants: torch.compile, CUDA graphs) under --compile-timeout
#      seconds (default 200), each an eager step side by side with them (scripts/benchmark.py
#      --steps-only), paper profile, batch 64 -> $OUT/benchmark_gpu_fast.json and
#      $OUT/benchmark_gpu_compile.json; the fastest variant that computes the eager loss (warm-up
#      phase; each variant's kernels per step and costliest kernels from torch.profiler, --trace 3)
#      becomes the runs' execution switches (static_slots, compile, bf16), unless --speed;
#   2. train: the runs of --runs side by side, one process each sharing the GPU (default: LAVAE on
#      multi-MNIST-1k and its baseline; then multi-dSprites, then multi-MNIST-10k: two at a time,
#      see gpu_runs/README.md), each resumed from gpu_runs/<run>/checkpoint.pt for the time left minus 2
#      minutes (python -m lavae_core.train --max-minutes: it stops with a checkpoint); a finished
#      run is shipped to checkpoints/<run>/ (weights, metrics.csv, command.txt), its full
#      checkpoint dropped;
#   3. evaluate every run touched, side by side (python -m lavae_core.evaluate: K-sample bound on
#      --eval-images "TEST TEST7" (default "500 200"), count accuracy on all 10k of both splits);
#   4. pack each touched run folder into $OUT/<run>.tgz (with its shipped checkpoints/<run>/ if
#      finished), plus the benchmark JSONs and lease.log: at most 8 files come back.
# Nothing is committed there: after the lease, `--unpack DIR` puts the runs back into gpu_runs/
# (and checkpoints/), for a commit. A CPU-only session evaluates the latest state with
#   python -m lavae_core.evaluate gpu_runs/<run> --device cpu --bound-images 200 100 --k 10
#
# Options: --budget-minutes M, --runs "model:dataset ...", --profile P (default paper), --seed S
# (default 0), --variants "V ...", --compile-variants "V ..." (benchmark variants, first = the
# reference; see scripts/benchmark.py), --compile-timeout S, --no-bench, --speed "KEY=VALUE ..."
# (execution switches for the runs, instead of the benchmark's pick), --set "KEY=VALUE ..." (more
# config overrides, e.g. for a smoke test), --steps N, --eval-images "N N7", --k K (default 100),
# --eval-timeout S (default 100), --bench-steps N, --threads T (CPU threads per process, default
# 4), --peak-tflops T (default 989: H100/H200 SXM dense bf16 datasheet), --state DIR (default
# gpu_runs), --out DIR (default $OUT, else lease_out). Environment: PYTHON (default
# .venv/bin/python if present, else python3).
# Data: the cached splits under data/ travel when the run's carry names them (e.g. carry
# ["data/multi-mnist-1k"]); a missing split is generated on the machine
# (multi-MNIST needs the MNIST files in data/mnist or $LAVAE_MNIST_DIR).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

budget=9 profile=paper seed=0 steps="" eval_images=500 eval_images7=200 k=100 bench=1 speed="" extra=""
bench_steps=10 peak=989 state=gpu_runs out="${OUT:-lease_out}" unpack="" threads=4
compile_timeout=200 eval_timeout=100
runs="lavae:multi-mnist-1k baseline:multi-mnist-1k"
variants="eager static static+bf16"
compile_variants="eager static+bf16+compile static+bf16+reduce-overhead"
while [ "$#" -gt 0 ]; do
    case "$1" in
        --budget-minutes|--runs|--profile|--seed|--variants|--compile-variants|--compile-timeout|\
        --speed|--set|--steps|--eval-images|--k|--bench-steps|--peak-tflops|--state|--out|--unpack|\
        --threads|--eval-timeout)
            [ "$#" -ge 2 ] || { echo "gpu_lease.sh: $1 needs a value" >&2; exit 2; } ;;
    esac
    case "$1" in
        --budget-minutes) budget="$2"; shift ;;
        --runs) runs="$2"; shift ;;
        --profile) profile="$2"; shift ;;
        --seed) seed="$2"; shift ;;
        --variants) variants="$2"; shift ;;
        --compile-variants) compile_variants="$2"; shift ;;
        --compile-timeout) compile_timeout="$2"; shift ;;
        --threads) threads="$2"; shift ;;
        --eval-timeout) eval_timeout="$2"; shift ;;
        --no-bench) bench=0 ;;
        --speed) speed="$2"; shift ;;
        --set) extra="$2"; shift ;;
        --steps) steps="$2"; shift ;;
        --eval-images) eval_images="${2%% *}"; eval_images7="${2##* }"; shift ;;
        --k) k="$2"; shift ;;
        --bench-steps) bench_steps="$2"; shift ;;
        --peak-tflops) peak="$2"; shift ;;
        --state) state="$2"; shift ;;
        --out) out="$2"; shift ;;
        --unpack) unpack="$2"; shift ;;
        -h|--help) sed -n '2,40p' "$0"; exit 0 ;;
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
    stamp="$(date -u +%Y-%m-%d_%H%M)"   # the lease's log, GPU load and benchmarks, kept per lease
    mkdir -p "$state/leases"
    for f in "$unpack"/*; do
        case "$f" in *.tgz) continue ;; esac
        cp "$f" "$state/leases/${stamp}_$(basename "$f")" && chmod u+w "$state/leases/${stamp}_$(basename "$f")" && echo "copied $f to $state/leases/"
    done
    rm -f "$state"/*/lease.log "$state"/*/eval.log   # copies of the lease's log; it is in leases/
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
# Two passes: the quick variants (no code generation), then the compiled ones under their own
# timeout (compilation may take minutes; if it runs out, the quick pass still stands).
pick() {   # the fastest variant, over the benchmark JSONs given, that computes the same loss
    "$PYTHON" - "$@" <<'EOF2'
import json, sys
sys.path.insert(0, "scripts")
from benchmark import variant_config
from lavae_core.config import make_config
best, prof = None, None
for path in sys.argv[1:]:
    try:
        res = json.load(open(path))
    except (OSError, ValueError):
        continue
    prof = res["profile"]
    phase = res["phases"].get("warm-up") or res["phases"]["after-warm-up"]
    for v, r in phase.items():
        if isinstance(r, dict) and all(x for k, x in r.items() if k.startswith("agrees_with_")):
            if best is None or r["images_per_s"] > best[1]:
                best = (v, r["images_per_s"])
if best:
    cfg = variant_config(make_config(prof), best[0])
    print(best[0], " ".join(f"{k}={json.dumps(getattr(cfg, k))}" for k in ("static_slots", "compile", "bf16")))
EOF2
}
if [ "$bench" = 1 ]; then
    jsons=()
    pass=0
    for vs in "$variants" "$compile_variants"; do
        pass=$((pass + 1))
        [ -n "$vs" ] || continue
        name=benchmark_gpu_fast.json limit=120
        [ "$pass" = 2 ] && name=benchmark_gpu_compile.json limit=$compile_timeout
        say "benchmark pass $pass ($vs), at most $limit s"
        # shellcheck disable=SC2086
        if timeout "$limit" "$PYTHON" scripts/benchmark.py --profile "$profile" --steps-only $vs \
            --rounds 3 --steps "$bench_steps" --warmup 3 --peak-tflops "$peak" --phases warm-up --trace 3 \
            --out "$out/$name" 2>&1 | tee -a "$log"; then
            jsons+=("$out/$name")
        else
            say "benchmark pass $pass failed or timed out"
        fi
    done
    if [ -z "$speed" ] && [ "${#jsons[@]}" -gt 0 ]; then
        best="$(pick "${jsons[@]}")"
        if [ -n "$best" ]; then
            speed="${best#* }"
            say "fastest variant: ${best%% *} -> $speed"
        fi
    fi
fi

# ---- 2. train the runs, side by side (one process each, sharing the GPU) -----------------------
reserve=2   # minutes kept for evaluation and packing
train_one() {   # run, dir, minutes, model, data set: train, retrying once with the eager step if the fast one fails
    local run="$1" dir="$2" mins="$3" model="$4" dataset="$5"
    local args=(--profile "$profile" --dataset "$dataset" --model "$model" --seed "$seed" --run-dir "$dir"
                --no-progress)
    [ -n "$steps" ] && args+=(--steps "$steps")
    # shellcheck disable=SC2086
    if ! OMP_NUM_THREADS=$threads "$PYTHON" -m lavae_core.train "${args[@]}" --max-minutes "$mins" \
            --set $speed $extra >> "$dir/train.log" 2>&1; then
        tail -n 20 "$dir/train.log" >> "$log"
        mins="$("$PYTHON" -c "print(round($(left) - $reserve, 2))")"
        say "$run failed with ${speed:-defaults}; retrying with the eager step for $mins min"
        if "$PYTHON" -c "import sys; sys.exit(0 if $mins >= 0.5 else 1)"; then
            # shellcheck disable=SC2086
            OMP_NUM_THREADS=$threads "$PYTHON" -m lavae_core.train "${args[@]}" --max-minutes "$mins" \
                --set static_slots=false compile=null bf16=false $extra >> "$dir/train.log" 2>&1 \
                || say "$run failed again"
        fi
    fi
}
touched=() pids=()
smi=""
if command -v nvidia-smi > /dev/null; then   # the GPU's load while the runs share it
    nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -l 10 > "$out/gpu_load.csv" 2>&1 &
    smi=$!
fi
mins="$("$PYTHON" -c "print(round($(left) - $reserve, 2))")"
if "$PYTHON" -c "import sys; sys.exit(0 if $mins >= 0.5 else 1)"; then
    for r in $runs; do
        model="${r%%:*}" dataset="${r#*:}"
        run="${model}_${dataset}_${profile}_s${seed}"
        dir="$state/$run"
        if [ -e "$dir/finished" ]; then say "$run finished earlier"; continue; fi
        mkdir -p "$dir"
        say "train $run for up to $mins min: ${speed:-(defaults)} $extra"
        touched+=("$run")
        train_one "$run" "$dir" "$mins" "$model" "$dataset" &
        pids+=($!)
    done
    [ "${#pids[@]}" -gt 0 ] && { wait "${pids[@]}" || true; }
else
    say "no time left to train"
fi
[ -n "$smi" ] && kill "$smi" 2> /dev/null
for run in "${touched[@]}"; do
    dir="$state/$run"
    tail -n 1 "$dir/train.log" | tee -a "$log"
    [ -e "$dir/checkpoint.pt" ] || { say "$run has no checkpoint"; continue; }
    if "$PYTHON" - "$dir" <<'EOF2'
import sys, torch
from lavae_core.config import Config
c = torch.load(sys.argv[1] + "/checkpoint.pt", map_location="cpu", weights_only=True)
sys.exit(0 if c["step"] >= Config.from_dict(c["config"]).steps else 1)
EOF2
    then
        "$PYTHON" -c "from lavae_core.checkpoint import ship_run; print(ship_run('$dir'))" | tee -a "$log"
        rm -f "$dir/checkpoint.pt" && touch "$dir/finished"
        say "$run finished: shipped to checkpoints/$run"
    fi
done

# ---- 3. evaluate (side by side), 4. pack -------------------------------------------------------
epids=()
for run in "${touched[@]}"; do
    dir="$state/$run" src="$state/$run/checkpoint.pt"
    [ -e "$src" ] || src="checkpoints/$run/weights.pt"   # finished: shipped, full checkpoint dropped
    [ -e "$src" ] || continue
    say "evaluate $run ($src)"
    OMP_NUM_THREADS=$threads timeout "$eval_timeout" "$PYTHON" -m lavae_core.evaluate "$src" \
        --bound-images "$eval_images" "$eval_images7" --k "$k" --out "$dir/eval.json" \
        > "$dir/eval.log" 2>&1 || say "evaluation of $run failed or timed out: $(tail -n 1 "$dir/eval.log")" &
    epids+=($!)
done
[ "${#epids[@]}" -gt 0 ] && { wait "${epids[@]}" || true; }
for run in "${touched[@]}"; do
    dir="$state/$run"
    [ -e "$dir/eval.json" ] && say "eval $run: $("$PYTHON" - "$dir/eval.json" <<'EOF2'
import json, sys
d = json.load(open(sys.argv[1]))
b = {s: round(v["bound"], 2) for s, v in d["bound"]["splits"].items()}
c = {s: v["accuracy"] for s, v in (d.get("count") or {}).get("splits", {}).items()}
print(f"step {d['step']}, K={d['bound']['params']['k']} bound {b}, count accuracy {c}")
EOF2
)"
    cp "$log" "$dir/lease.log"
    paths=("$dir")
    [ -d "checkpoints/$run" ] && [ -e "$dir/finished" ] && paths+=("checkpoints/$run")
    tar -czf "$out/$run.tgz" "${paths[@]}"
    say "packed $out/$run.tgz ($(du -h "$out/$run.tgz" | cut -f1))"
done
say "done in $(( ($(date +%s) - t0) / 60 )) min $(( ($(date +%s) - t0) % 60 )) s"
