"""The algorithm registry: built-ins register here on import, plugins through the `rlvr.algorithms` entry-point
group (entry-point name = algorithm name, object = factory)."""

from __future__ import annotations

import dataclasses
from typing import Any

from rlvr.registry import Registry, suggest

ALGORITHMS: Registry[Any] = Registry("algorithm", "rlvr.algorithms")
register = ALGORITHMS.register
names = ALGORITHMS.names


def make(name: str, **overrides: Any) -> Any:
    """Build the algorithm registered as `name` with keyword overrides of its paper defaults; a misspelled
    option gets a TypeError with a 'did you mean' hint."""
    factory = ALGORITHMS.get(name)
    if dataclasses.is_dataclass(factory):
        options = [f.name for f in dataclasses.fields(factory) if f.init]
        for key in overrides:
            if key not in options:
                raise TypeError(f"algorithm {name!r} has no option {key!r}; options: {', '.join(options)}."
                                + suggest(key, options))
    return factory(**overrides)
