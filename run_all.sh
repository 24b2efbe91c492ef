#!/usr/bin/env bash
# The main job: set up .venv (see scripts/setup_env.sh), generate the paper-size data sets, bring
# the evaluation record of every shipped checkpoint up to date (checkpoints/<run>/eval.json: reused
# when its weights hash and parameters match, else evaluated), then execute every notebook in
# notebooks/ in sorted order with papermill. Executed copies go to the git-ignored executed/ folder;
# the log goes to executed/run_all.log as well as the terminal. Stops at the first step that fails.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

usage() {
    cat <<'USAGE'
Usage: bash run_all.sh [--smoke] [--retrain] [--reevaluate] [--profile NAME] [-h|--help]

  --smoke          seconds-long smoke scale: notebooks get `-p smoke True` (and LAVAE_SMOKE=1);
                   the paper-size data-set and evaluation-record steps are skipped
  --retrain        notebooks get `-p retrain True`: train again instead of reusing checkpoints
  --reevaluate     recompute every evaluation record (checkpoints/<run>/eval.json) instead of
                   reusing those that match (~3 minutes per baseline, ~8 per LAVAE on 1 CPU core)
  --profile NAME   notebooks get `-p profile NAME`
  -h, --help       show this help

Notebooks that do not declare a parameter ignore it (papermill only warns).
Offline machines: set LAVAE_MNIST_DIR to a folder holding the four MNIST files.
USAGE
}

smoke=0
reevaluate=()
params=()
while [ "$#" -gt 0 ]; do
    case "$1" in
        --smoke) smoke=1; params+=(-p smoke True) ;;
        --retrain) params+=(-p retrain True) ;;
        --reevaluate) reevaluate=(--reevaluate) ;;
        --profile)
            if [ "$#" -lt 2 ]; then echo "run_all.sh: --profile needs a NAME" >&2; usage >&2; exit 2; fi
            params+=(-p profile "$2"); shift ;;
        --profile=*) params+=(-p profile "${1#--profile=}") ;;
        -h|--help) usage; exit 0 ;;
        *) echo "run_all.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

mkdir -p executed
exec > >(tee executed/run_all.log) 2>&1
echo "[run_all] $(date '+%Y-%m-%d %H:%M:%S') run_all.sh ${reevaluate[*]:-} ${params[*]:-}"

source scripts/setup_env.sh
if [ "$smoke" -eq 1 ]; then
    export LAVAE_SMOKE=1
fi
# Leave matplotlib's backend to ipykernel (inline), so executed notebooks keep their figures.
unset MPLBACKEND

# papermill starts kernel `python3`; jupyter_client runs a spec whose argv[0] is `python` with the
# interpreter that runs papermill, i.e. .venv/bin/python. Refuse a spec that points elsewhere.
"$LAVAE_PY" - <<'PY'
import os, sys
from jupyter_client.kernelspec import KernelSpecManager
spec = KernelSpecManager().get_kernel_spec("python3")
exe = spec.argv[0]
plain = {"python", "python%d" % sys.version_info[0], "python%d.%d" % sys.version_info[:2]}
if exe not in plain and os.path.abspath(exe) != os.path.abspath(sys.executable):
    sys.exit(f"[run_all] kernel 'python3' ({spec.resource_dir}) runs {exe}, not {sys.executable}; "
             "remove that kernelspec or point it at .venv/bin/python")
print(f"[run_all] kernel python3 -> {sys.executable if exe in plain else exe}")
PY

if [ "$smoke" -eq 0 ]; then
    echo "[run_all] generating the paper-size data sets (cached files are reused)"
    "$LAVAE_PY" -m lavae_core.datasets --all
    echo "[run_all] $(date '+%H:%M:%S') evaluation records of the shipped checkpoints ${reevaluate[*]:-}"
    "$LAVAE_PY" -m lavae_core.records "${reevaluate[@]}"
fi

LC_COLLATE=C  # byte order for the glob below
shopt -s nullglob
notebooks=(notebooks/*.ipynb)
shopt -u nullglob
if [ "${#notebooks[@]}" -eq 0 ]; then
    echo "[run_all] no notebooks in notebooks/" >&2
    exit 1
fi
for nb in "${notebooks[@]}"; do   # glob expansion is sorted
    name="$(basename "$nb")"
    echo "[run_all] $(date '+%H:%M:%S') executing $nb -> executed/$name"
    if ! "$LAVAE_PY" -m papermill "$nb" "executed/$name" --cwd notebooks -k python3 \
            --log-output --no-progress-bar "${params[@]}"; then
        echo "[run_all] FAILED: $nb (the executed copy with the error: executed/$name)" >&2
        exit 1
    fi
done
echo "[run_all] $(date '+%H:%M:%S') done: ${#notebooks[@]} notebooks executed into executed/"
