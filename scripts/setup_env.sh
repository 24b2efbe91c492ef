# Shared set-up for run_tests.sh and run_all.sh. Source it from bash (`source scripts/setup_env.sh`);
# the caller runs with `set -euo pipefail`.
#
# Creates .venv with `python3 -m venv` when missing and installs requirements.txt plus the package
# (`-e .`). The install is skipped when .venv/.stamp holds the sha256 of requirements.txt and
# pyproject.toml from the last successful install. torch is installed first, in this order:
#   1. a torch already in .venv that satisfies the pin is kept (e.g. a CUDA build you put there);
#   2. else a wheel lying on disk (pip's find-links), without the network;
#   3. else the CPU build from $LAVAE_TORCH_INDEX (default: PyTorch's CPU wheel index) when reachable;
#   4. else whatever the ordinary `pip install -r requirements.txt` picks.
# Environment: PYTHON (interpreter that creates the venv, default python3), LAVAE_TORCH_INDEX
# (set empty to skip step 3), LAVAE_MNIST_DIR (default ../shared/data/mnist when that folder exists).

LAVAE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LAVAE_VENV="$LAVAE_ROOT/.venv"
LAVAE_PY="$LAVAE_VENV/bin/python"
export PIP_DISABLE_PIP_VERSION_CHECK=1

lavae_setup_venv() {
    local stamp want req torch_index
    if [ ! -e "$LAVAE_PY" ]; then
        echo "[setup] creating $LAVAE_VENV with ${PYTHON:-python3}"
        "${PYTHON:-python3}" -m venv "$LAVAE_VENV"
    fi
    if ! "$LAVAE_PY" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
        echo "[setup] $LAVAE_PY does not run or is older than Python 3.10; remove .venv and retry" >&2
        return 1
    fi
    want="$(cat "$LAVAE_ROOT/requirements.txt" "$LAVAE_ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1)"
    stamp="$(cat "$LAVAE_VENV/.stamp" 2>/dev/null || true)"
    if [ "$stamp" = "$want" ]; then
        return 0
    fi
    echo "[setup] installing requirements into .venv (the first time takes a few minutes)"
    req="$(sed -n 's/#.*//; s/[[:space:]]//g; /^torch\([=<>!~;]\|$\)/p' "$LAVAE_ROOT/requirements.txt" | head -n1)"
    if [ -n "$req" ]; then
        torch_index="${LAVAE_TORCH_INDEX-https://download.pytorch.org/whl/cpu}"
        if "$LAVAE_PY" -m pip install -q --no-index --no-deps "$req" >/dev/null 2>&1; then
            :  # already satisfied, or a wheel on disk; its dependencies come with requirements.txt
        elif [ -n "$torch_index" ] && "$LAVAE_PY" -c 'import sys, urllib.request
urllib.request.urlopen(sys.argv[1].rstrip("/") + "/torch/", timeout=5)' "$torch_index" >/dev/null 2>&1; then
            echo "[setup] installing $req from $torch_index"
            "$LAVAE_PY" -m pip install -q "$req" --extra-index-url "$torch_index"
        fi
    fi
    (cd "$LAVAE_ROOT" && "$LAVAE_PY" -m pip install -q -r requirements.txt -e .)
    echo "$want" > "$LAVAE_VENV/.stamp"
}

lavae_setup_venv

# MNIST from the folder beside the repository (CI, offline machines) unless the caller chose one.
if [ -z "${LAVAE_MNIST_DIR:-}" ] && [ -d "$LAVAE_ROOT/../shared/data/mnist" ]; then
    LAVAE_MNIST_DIR="$(cd "$LAVAE_ROOT/../shared/data/mnist" && pwd)"
    export LAVAE_MNIST_DIR
fi
# Kernels: the venv's own kernelspec wins over a user-level one; quieten debugpy's frozen-module note.
export JUPYTER_PREFER_ENV_PATH=1
export PYDEVD_DISABLE_FILE_VALIDATION=1
