"""Exact evaluation of + - * / arithmetic over integer literals, by walking Python's AST: no `eval`, no names,
no calls, no powers, so model-written text can be scored safely."""

from __future__ import annotations

import ast
from fractions import Fraction

MAX_CHARS = 512
_BINARY = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
}


def evaluate(expression: str) -> Fraction:
    """Exact value of `expression`; ValueError names what is not allowed, ZeroDivisionError on x/0."""
    if len(expression) > MAX_CHARS:
        raise ValueError(f"expression longer than {MAX_CHARS} characters")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as exc:
        raise ValueError(f"not an arithmetic expression: {expression!r}") from exc
    return _value(tree.body)


def literals(expression: str) -> list[int]:
    """The integer literals of a valid expression, in order (to check which numbers it used)."""
    tree = ast.parse(expression.strip(), mode="eval")
    return [node.value for node in ast.walk(tree) if isinstance(node, ast.Constant)]


def _value(node: ast.AST) -> Fraction:
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return Fraction(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        return _BINARY[type(node.op)](_value(node.left), _value(node.right))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_value(node.operand)
    raise ValueError(f"not allowed in an arithmetic expression: {ast.dump(node)[:60]}")
