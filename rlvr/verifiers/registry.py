"""The verifier registry: built-ins register here on import, plugins through the `rlvr.verifiers` entry-point
group (entry-point name = verifier name, object = factory)."""

from __future__ import annotations

from typing import Any

from rlvr.registry import Registry
from rlvr.verifiers.base import Compose, Verifier

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
