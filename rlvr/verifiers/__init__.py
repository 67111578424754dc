"""Verifiers turn (problem, completion) into a Verdict. Built-ins register here by name; plugins add more through
the `rlvr.verifiers` entry-point group (entry-point name = verifier name, object = factory)."""

from __future__ import annotations

from typing import Any

from rlvr.registry import Registry
from rlvr.verifiers.base import Compose, Executor, SerialExecutor, Verifier

VERIFIERS: Registry[Verifier] = Registry("verifier", "rlvr.verifiers")
register = VERIFIERS.register
names = VERIFIERS.names


def make(spec: str | Verifier | list[Any], **overrides: Any) -> Verifier:
    """Build a verifier from a name (`"math"`), a `+`-joined composition (`"math+overlong"`), a list of names or
    `(name, weight)` pairs, or pass an existing verifier through."""
    if callable(spec) and not isinstance(spec, str):
        return spec
    if isinstance(spec, str) and "+" not in spec:
        return VERIFIERS.make(spec, **overrides)
    parts = spec.split("+") if isinstance(spec, str) else list(spec)
    pairs = [p if isinstance(p, (tuple, list)) else (p, 1.0) for p in parts]
    return Compose([VERIFIERS.make(name.strip()) for name, _ in pairs], weights=[w for _, w in pairs],
                   names=[name.strip() for name, _ in pairs])


# Built-in verifiers register themselves on import.
from rlvr.verifiers import code, countdown, format, math_verifier, overlong  # noqa: E402,F401
from rlvr.verifiers.pool import VerifierPool, make_executor  # noqa: E402

__all__ = ["VERIFIERS", "Compose", "Executor", "SerialExecutor", "Verifier", "VerifierPool", "make", "make_executor",
           "names", "register"]
