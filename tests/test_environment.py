"""Project infrastructure: environment.yml and requirements.txt agree, pyproject's runtime
dependencies are listed, and notebooks are committed clean (no outputs) with a parameters cell."""
import json
from pathlib import Path

import pytest
import yaml  # PyYAML: a hard dependency of papermill (requirements.txt)
from packaging.requirements import Requirement  # a dependency of pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _key(line):
    """(normalised name, extras, specifier, marker) of one requirement line."""
    req = Requirement(line)
    name = req.name.lower().replace("_", "-").replace(".", "-")
    return name, tuple(sorted(req.extras)), str(req.specifier), str(req.marker or "")


def _parse(entries, source: str):
    """Requirement lines -> ({name: key}, [option lines such as '-e .'])."""
    reqs, options = {}, []
    for entry in entries:
        if entry.startswith("-"):
            options.append(" ".join(entry.split()))
            continue
        key = _key(entry)
        assert key[0] not in reqs, f"{key[0]} listed twice in {source}"
        reqs[key[0]] = key
    return reqs, options


def _requirements_txt():
    lines = (raw.split("#", 1)[0].strip() for raw in (ROOT / "requirements.txt").read_text().splitlines())
    return _parse([line for line in lines if line], "requirements.txt")


def _environment_yml():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    deps = env["dependencies"]
    pip_blocks = [d["pip"] for d in deps if isinstance(d, dict) and "pip" in d]
    assert len(pip_blocks) == 1, "environment.yml needs exactly one pip: block"
    reqs, options = _parse([str(e).strip() for e in pip_blocks[0]], "environment.yml's pip block")
    return env, reqs, options


def test_environment_yml_matches_requirements_txt():
    txt, _ = _requirements_txt()
    env, yml, options = _environment_yml()
    assert yml == txt, (
        "environment.yml's pip block and requirements.txt differ:\n"
        f"  only/different in environment.yml: {sorted(set(yml.values()) - set(txt.values()))}\n"
        f"  only/different in requirements.txt: {sorted(set(txt.values()) - set(yml.values()))}")
    assert "-e ." in options, "environment.yml's pip block should install the package with `-e .`"
    assert "conda-forge" in env["channels"]
    conda_deps = [d for d in env["dependencies"] if isinstance(d, str)]
    assert "pip" in conda_deps and any(d.replace(" ", "").startswith("python=") for d in conda_deps)


def test_pyproject_dependencies_are_in_requirements():
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    txt, _ = _requirements_txt()
    names = {_key(dep)[0] for dep in project.get("dependencies", [])}
    missing = sorted(names - set(txt))
    assert not missing, f"pyproject.toml dependencies missing from requirements.txt: {missing}"


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks in notebooks/"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_is_clean_and_parametrised(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    dirty = [i for i, c in enumerate(code) if c.get("outputs") or c.get("execution_count") is not None]
    assert not dirty, (f"{path.name}: code cells {dirty} (0-based, code cells only) have outputs or an "
                       "execution count; clear them before committing")
    tagged = [i for i, c in enumerate(code) if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: {len(tagged)} code cells tagged 'parameters', want exactly 1"
