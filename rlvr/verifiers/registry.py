"""The verifier registry: built-ins register here on import, plugins through the `rlvr.verifiers` entry-point
group (entry-point name = verifier name, object = factory)."""

from __future__ import annotations

from typing import Any

from rlvr.registry import Registry
from rlvr.verifiers.base import Compose, Verifier

VERIFIERS: Registry[Verifier] = Registry("verifier", "rlvr.verifiers")
register = VERIFIERS.register
names = VERIFIERS.names


def make(spec: str | Verifier | dict[str, Any] | list[Any], **overrides: Any) -> Verifier:
    """Build a verifier from a name (`"math"`), a `+`-joined composition (`"math+overlong"`), a dict naming one
    with its options (`{"name": "reward_model", "path": ...}`), a list of names, `(name, weight)` pairs or such
    dicts with a `weight` (a weighted `Compose`), or pass an existing verifier through."""
    if callable(spec) and not isinstance(spec, str):
        return spec
    if isinstance(spec, dict):
        options = {k: v for k, v in spec.items() if k not in ("name", "weight")}
        return VERIFIERS.make(spec["name"], **options, **overrides)
    if isinstance(spec, str) and "+" not in spec:
        return VERIFIERS.make(spec, **overrides)
    parts = spec.split("+") if isinstance(spec, str) else list(spec)
    named = [p if isinstance(p, dict) else dict(zip(("name", "weight"), p)) if isinstance(p, (tuple, list))
             else {"name": p} for p in parts]
    return Compose([make({**p, "name": p["name"].strip()}) for p in named],
                   weights=[p.get("weight", 1.0) for p in named], names=[p["name"].strip() for p in named])
