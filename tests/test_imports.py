"""The package's import graph: no cycles, even counting imports inside functions, and no function-level
import except a deferred heavy optional dependency (with a comment that says why).

Every module of ``d3dp_ktp`` is parsed with ``ast`` (nothing is imported), so the test covers whatever
modules exist when it runs.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = "d3dp_ktp"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE
# Heavy or optional third-party packages a function may import on first use, so that importing the
# package (and every CLI's --help) stays fast and works without them. scipy is required, but
# scipy.signal/optimize/spatial take seconds to import and only some code paths need them.
DEFERRABLE = {"matplotlib", "mpl_toolkits", "onnx", "onnxruntime", "av", "h5py", "tensorboard", "scipy", "PIL"}
# Modules that import torch, deferred where sample.py reads and checks its input before torch loads
# (a mistake is reported in about a second: docs/inputs.md). Each entry is (file, imported module).
TORCH_DEFERRED = {("d3dp_ktp/inference/io.py", "d3dp_ktp.camera")}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def discover() -> dict[str, tuple[Path, ast.Module]]:
    return {module_name(p): (p, ast.parse(p.read_text(encoding="utf-8"), str(p))) for p in sorted(ROOT.rglob("*.py"))}


def _is_type_checking(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and ast.unparse(test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")


def imports(tree: ast.Module) -> list[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement that runs, with True when it sits inside a function or class body.
    ``if TYPE_CHECKING:`` blocks never run, so they are left out."""
    found = []

    def visit(node: ast.AST, nested: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if _is_type_checking(child):
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                found.append((child, nested))
            inner = nested or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda))
            visit(child, inner)

    visit(tree, False)
    return found


def _base(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module a ``from ... import`` names (relative levels resolved)."""
    if node.level == 0:
        return node.module or ""
    package = module.split(".") if is_package else module.split(".")[:-1]
    anchor = package[:len(package) - (node.level - 1)]
    return ".".join(anchor + ([node.module] if node.module else []))


def targets(module: str, is_package: bool, node, known: set[str]) -> set[str]:
    """The package modules one import statement loads (the named module, or each named submodule)."""
    def existing(name: str) -> str | None:
        while name and name not in known:
            name = name.rpartition(".")[0]
        return name or None

    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        base = _base(module, is_package, node)
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
    return {t for n in names if (n == PACKAGE or n.startswith(PACKAGE + ".")) and (t := existing(n))}


def ancestors(module: str) -> set[str]:
    parts = module.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


def import_graph(modules) -> dict[str, set[str]]:
    """module -> the package modules it imports. Importing ``a.b.c`` first runs the packages ``a.b``'s
    ``__init__``, so those count too, except the importer's own packages (already running by then)."""
    known = set(modules)
    graph = {m: set() for m in modules}
    for m, (path, tree) in modules.items():
        own = ancestors(m) | ({m} if path.name == "__init__.py" else set())
        for node, _ in imports(tree):
            for t in targets(m, path.name == "__init__.py", node, known):
                graph[m] |= ({t} | (ancestors(t) & known)) - own - {m}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as [a, b, ..., a], or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    for start in sorted(graph):
        if state.get(start):
            continue
        stack, path = [(start, iter(sorted(graph[start])))], [start]
        state[start] = 1
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                state[node] = 2
                stack.pop()
                path.pop()
            elif state.get(child) == 1:
                return path[path.index(child):] + [child]
            elif not state.get(child):
                state[child] = 1
                stack.append((child, iter(sorted(graph[child]))))
                path.append(child)
    return None


def test_the_package_has_no_import_cycle_counting_function_level_imports():
    cycle = find_cycle(import_graph(discover()))
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_function_level_imports_only_defer_heavy_optional_dependencies_and_say_so():
    bad = []
    for m, (path, tree) in discover().items():
        lines = path.read_text(encoding="utf-8").splitlines()
        for node, nested in imports(tree):
            if not nested:
                continue
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            heavy = node.level == 0 if isinstance(node, ast.ImportFrom) else True
            heavy = heavy and all(n.split(".")[0] in DEFERRABLE for n in names)
            rel = str(path.relative_to(ROOT.parent))
            heavy = heavy or all((rel, n) in TORCH_DEFERRED for n in names)
            commented = "#" in lines[node.lineno - 1] or lines[node.lineno - 2].strip().startswith("#")
            if not (heavy and commented):
                bad.append(f"{path.relative_to(ROOT.parent)}:{node.lineno}: {ast.unparse(node)}")
    assert not bad, ("imports inside functions that are not a deferred heavy optional dependency "
                     f"({', '.join(sorted(DEFERRABLE))}) with a comment saying why:\n" + "\n".join(bad))


# --- the checker itself ------------------------------------------------------------------------

def _fake(tmp_path: Path, files: dict[str, str]) -> dict:
    modules = {}
    for rel, text in files.items():
        p = tmp_path / PACKAGE / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
        parts = Path(PACKAGE, rel).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = (p, ast.parse(text))
    return modules


def test_checker_sees_a_cycle_through_a_function_level_relative_import(tmp_path):
    modules = _fake(tmp_path, {
        "__init__.py": "",
        "sub/__init__.py": "from .a import f\n",
        "sub/a.py": "from ..b import g\ndef f():\n    return g()\n",
        "b.py": "def g():\n    from .sub import a\n    return a\n",
    })
    graph = import_graph(modules)
    assert graph["d3dp_ktp.sub.a"] == {"d3dp_ktp.b"} and graph["d3dp_ktp.b"] == {"d3dp_ktp.sub", "d3dp_ktp.sub.a"}
    assert find_cycle(graph) == ["d3dp_ktp.b", "d3dp_ktp.sub", "d3dp_ktp.sub.a", "d3dp_ktp.b"]


def test_checker_counts_the_package_init_that_importing_a_submodule_runs(tmp_path):
    # experiment imports only pkg.config, but that runs pkg/__init__, which imports pkg.heavy -> experiment
    modules = _fake(tmp_path, {
        "__init__.py": "",
        "experiment.py": "from .pkg.config import Config\n",
        "pkg/__init__.py": "from .config import Config\nfrom .heavy import Trainer\n",
        "pkg/config.py": "class Config: ...\n",
        "pkg/heavy.py": "from .config import Config\nfrom ..experiment import load\n",
    })
    graph = import_graph(modules)
    assert graph["d3dp_ktp.experiment"] == {"d3dp_ktp.pkg", "d3dp_ktp.pkg.config"}
    assert graph["d3dp_ktp.pkg.heavy"] == {"d3dp_ktp.pkg.config", "d3dp_ktp.experiment"}  # not its own package
    assert find_cycle(graph) == ["d3dp_ktp.experiment", "d3dp_ktp.pkg", "d3dp_ktp.pkg.heavy", "d3dp_ktp.experiment"]


def test_checker_accepts_a_layered_graph_and_ignores_type_checking_imports(tmp_path):
    modules = _fake(tmp_path, {
        "__init__.py": "",
        "a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .b import B\nimport numpy\n",
        "b.py": "from . import a\nimport d3dp_ktp.a as alias\n",
    })
    graph = import_graph(modules)
    assert graph == {"d3dp_ktp": set(), "d3dp_ktp.a": set(), "d3dp_ktp.b": {"d3dp_ktp.a"}}
    assert find_cycle(graph) is None


@pytest.mark.parametrize("source, nested", [("import os\n", False), ("def f():\n    import os\n", True),
                                            ("try:\n    import av\nexcept ImportError:\n    av = None\n", False),
                                            ("class C:\n    import json\n", True)])
def test_checker_tells_function_level_from_module_level_imports(source, nested):
    assert [n for _, n in imports(ast.parse(source))] == [nested]
