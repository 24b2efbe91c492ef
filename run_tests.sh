#!/usr/bin/env bash
# Set up .venv (see scripts/setup_env.sh) and run the tests at smoke scale:
# the unit tests in tests/ and every notebook in notebooks/ (nbval-lax: a notebook fails only when
# a cell raises; stderr, warnings and progress bars are fine).
#
#   bash run_tests.sh                              # everything: tests/ and notebooks/
#   bash run_tests.sh tests/test_environment.py    # extra arguments go to pytest instead of the
#   bash run_tests.sh -x notebooks/00_data.ipynb   #   default paths
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
source scripts/setup_env.sh

export LAVAE_SMOKE="${LAVAE_SMOKE:-1}"
export MPLBACKEND=Agg

if [ "$#" -eq 0 ]; then
    set -- tests notebooks
fi
rc=0
"$LAVAE_PY" -m pytest -q -p no:cacheprovider --nbval-lax --nbval-current-env "$@" || rc=$?
if [ "$rc" -eq 5 ]; then
    echo "run_tests.sh: pytest collected no tests" >&2
fi
exit "$rc"
