"""A house without circles: lavae_core's modules import each other one way only (function-local
imports included), so that data flows data -> model -> checkpoint -> train -> evaluate ->
records -> Table 1."""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "lavae_core"


def imports_of(path: Path) -> set[str]:
    """The sibling modules a file imports anywhere in it (relative or absolute lavae_core imports)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and node.module:
                out.add(node.module.split(".")[0])
            elif node.level == 1:                       # from . import x
                out.update(a.name for a in node.names if (path.parent / f"{a.name}.py").exists())
            elif node.module and node.module.startswith("lavae_core."):
                out.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            out.update(a.name.split(".")[1] for a in node.names if a.name.startswith("lavae_core."))
    return out - {"__init__"}


def find_circle(folder: Path) -> list[str] | None:
    """One import circle among the modules of ``folder`` (as a path a -> b -> ... -> a), or None."""
    graph = {p.stem: imports_of(p) for p in folder.glob("*.py") if p.stem != "__init__"}
    state: dict[str, int] = {}

    def visit(node, path):
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (circle := visit(nxt, path + [nxt])):
                return circle
        state[node] = 2
        return None

    return next((c for m in sorted(graph) if m not in state and (c := visit(m, [m]))), None)


def test_no_import_circles():
    assert find_circle(PACKAGE) is None


def test_a_function_local_import_that_closes_a_circle_is_found(tmp_path):
    (tmp_path / "a.py").write_text("from .b import g\n")
    (tmp_path / "b.py").write_text("from . import c\n")
    (tmp_path / "c.py").write_text("def f():\n    from .a import h\n")
    assert find_circle(tmp_path) == ["a", "b", "c", "a"]
    (tmp_path / "c.py").write_text("def f():\n    import numpy\n")
    assert find_circle(tmp_path) is None
