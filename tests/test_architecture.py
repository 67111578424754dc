"""The package's shape: no import circle among rlvr's modules, no built-in importing its own package's
`__init__`, and no module past ~500 lines (the sandbox's inside file must stay one file: see docs/sandbox.md)."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "rlvr"
LONG_BY_DESIGN = {"rlvr.verifiers.sandbox.inside"}


def module_name(path: Path) -> str:
    name = ".".join(path.relative_to(ROOT.parent).with_suffix("").parts)
    return name.removesuffix(".__init__")


MODULES = {module_name(p): p for p in ROOT.rglob("*.py")}


def imports(source: str) -> set[str]:
    """The rlvr modules `source` imports, at module level or deferred in a function (both are arrows: a deferred
    import only hides a circle). `from rlvr import x` counts as importing `rlvr` itself."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "rlvr":
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in MODULES}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "rlvr"}
    return {m for m in found if m in MODULES}


GRAPH = {name: imports(path.read_text()) - {name} for name, path in MODULES.items()}


def test_the_import_graph_has_no_circle():
    cycles, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(GRAPH[node]):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for name in sorted(GRAPH):
        if name not in state:
            visit(name, [name])
    assert cycles == []


def test_no_module_imports_its_own_package_init():
    back = [(name, pkg) for name, path in MODULES.items() if path.name != "__init__.py"
            for pkg in [name.rsplit(".", 1)[0]] if pkg != "rlvr" and pkg in GRAPH[name]]
    assert back == []


def test_modules_stay_short():
    long = {name: n for name, path in MODULES.items() if (n := len(path.read_text().splitlines())) > 500}
    assert set(long) <= LONG_BY_DESIGN, long


def test_the_checker_sees_the_arrows():
    """The graph is built from the real files, and a built-in that imported its package would be seen."""
    assert "rlvr.verifiers.registry" in GRAPH["rlvr.verifiers.math_verifier"]
    assert "rlvr.verifiers.worker" in GRAPH["rlvr.verifiers.pool"]
    assert imports("from rlvr.verifiers import register\n") == {"rlvr.verifiers"}
    assert imports("from rlvr import verifiers\n") == {"rlvr", "rlvr.verifiers"}
    assert imports("def f():\n    from rlvr.verifiers.pool import VerifierPool\n") == {"rlvr.verifiers.pool"}
