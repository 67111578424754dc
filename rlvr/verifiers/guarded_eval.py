"""Scorers from other libraries that `eval` a model's answer (reasoning-gym reads list answers with `eval`; sympy's
`parse_expr`, which several of its scorers call, evaluates generated code) run under `no_code_execution()`. While
it is active the builtins `eval` and `exec` are replaced: `exec` refuses text, and `eval` runs only an expression
with no name or attribute that starts with `_`, no lambda or comprehension, no builtins reachable, and names bound to
only plain data or sympy's own objects (minus the few sympy functions that write files or compile code). So an answer
that is code (`__import__("os").system(...)`) is refused, not run, and the refusal is recorded for the verdict."""

from __future__ import annotations

import ast
import builtins
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_EVAL, _EXEC = builtins.eval, builtins.exec
_LOCK = threading.Lock()
# sympy callables that reach outside arithmetic: render and write files, compile or run code, change global state
SYMPY_REFUSED = {"preview", "lambdify", "var", "init_session", "init_printing", "sympify", "parse_expr", "exec_",
                 "symbols", "textplot", "pprint", "python", "source", "test", "doctest"}
SYMPY_REFUSED_PREFIXES = ("plot", "print")
FORBIDDEN_NODES = (ast.Lambda, ast.NamedExpr, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp,
                   ast.Await, ast.Yield, ast.YieldFrom)
PLAIN = (int, float, complex, str, bytes, bool, type(None))


class CodeRefused(ValueError):
    """An answer that is code, met by an `eval` or `exec` under `no_code_execution`."""


class Refusals(threading.local):
    def __init__(self) -> None:
        self.reasons: list[str] = []


REFUSALS = Refusals()


def refuse(reason: str) -> CodeRefused:
    REFUSALS.reasons.append(reason)
    return CodeRefused(reason)


def allowed(value: Any) -> bool:
    """Plain data, or an object of sympy's (a class, a function, an expression) other than SYMPY_REFUSED."""
    if isinstance(value, PLAIN):
        return True
    module = getattr(value, "__module__", None) or type(value).__module__ or ""
    name = getattr(value, "__name__", "")
    return (module.split(".")[0] == "sympy" and name not in SYMPY_REFUSED
            and not (isinstance(name, str) and name.startswith(SYMPY_REFUSED_PREFIXES)))


def check(source: str) -> ast.Expression:
    """The expression's tree, or CodeRefused naming what makes it code."""
    tree = ast.parse(source.strip(), mode="eval")  # a SyntaxError, as `eval` raises
    for node in ast.walk(tree):
        if isinstance(node, FORBIDDEN_NODES):
            raise refuse(f"{type(node).__name__.lower()} in {source[:80]!r}")
        name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else ""
        if name.startswith("_"):
            raise refuse(f"the name {name!r} in {source[:80]!r}")
    return tree


def guarded_eval(source: Any, globals: dict[str, Any] | None = None, locals: dict[str, Any] | None = None) -> Any:
    """`eval` of a checked expression in a scope of only the allowed names, with no builtins (called without
    globals, as `eval(answer)` is, it sees no module's names at all)."""
    if not isinstance(source, str):
        raise refuse(f"a compiled {type(source).__name__}, which cannot be checked")
    tree = check(source)
    scope = {k: v for k, v in (globals or {}).items() if allowed(v)}
    scope["__builtins__"] = {}
    local = None if locals is None else {k: v for k, v in locals.items() if allowed(v)}
    return _EVAL(compile(tree, "<answer>", "eval"), scope, local)


SYMPY_SETUP = "from sympy import *"  # what sympy's parse_expr itself execs to build its namespace


def refused_exec(source: Any, *args: Any, **kwargs: Any) -> None:
    """Refuses `exec` of text, but for sympy's own namespace set-up; a code object (the import system runs a module
    imported for the first time so; an answer cannot compile one, `compile` being out of its reach) runs."""
    if source == SYMPY_SETUP or not isinstance(source, str):
        return _EXEC(source, *args, **kwargs)
    raise refuse("exec")


@contextmanager
def no_code_execution() -> Iterator[list[str]]:
    """Within this block, `eval` and `exec` are guarded (process-wide: one block at a time); yields the list of
    refusals made in it."""
    with _LOCK:
        REFUSALS.reasons = []
        builtins.eval, builtins.exec = guarded_eval, refused_exec
        try:
            yield REFUSALS.reasons
        finally:
            builtins.eval, builtins.exec = _EVAL, _EXEC
