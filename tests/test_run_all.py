"""run_all.sh's options: --reevaluate recomputes every evaluation record; bad arguments stop it."""
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(*args):
    return subprocess.run(["bash", str(ROOT / "run_all.sh"), *args], capture_output=True, text=True, timeout=60)


def test_help_lists_reevaluate():
    r = _run("--help")
    assert r.returncode == 0 and "--reevaluate" in r.stdout and "eval.json" in r.stdout


def test_unknown_argument_stops_before_anything_runs():
    r = _run("--reevalute")
    assert r.returncode == 2 and r.stderr.startswith("run_all.sh: unknown argument: --reevalute")


def test_the_records_step_gets_the_flag():
    """The evaluation-record step passes --reevaluate on to python -m lavae_core.records."""
    text = (ROOT / "run_all.sh").read_text()
    assert '--reevaluate) reevaluate=(--reevaluate)' in text
    assert '-m lavae_core.records "${reevaluate[@]}"' in text
