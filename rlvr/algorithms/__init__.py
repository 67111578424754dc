"""Algorithms turn scored groups into a loss. Built-ins register here by name; plugins add more through the
`rlvr.algorithms` entry-point group (entry-point name = algorithm name, object = factory).

    algo = rlvr.algorithms.make("dapo", eps_high=0.3)
    groups = algo.select(groups)                       # identity, or DAPO's dynamic-sampling filter
    A = algo.advantages(rewards)                       # [B, G] -> [B, G]
    loss, metrics = algo.loss(logp, old_logp, ref_logp, A.flatten(), mask)
"""

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


# Built-in algorithms register themselves on import.
from rlvr.algorithms import cispo, dapo, dr_grpo, grpo, gspo, reinforce, rloo  # noqa: E402,F401
from rlvr.algorithms.advantages import group_metrics, group_normalised, leave_one_out, mean_baseline  # noqa: E402
from rlvr.algorithms.base import Algorithm  # noqa: E402
from rlvr.algorithms.core import PolicyLoss, aggregate, kl_estimate, policy_loss  # noqa: E402

__all__ = ["ALGORITHMS", "Algorithm", "PolicyLoss", "aggregate", "group_metrics", "group_normalised",
           "kl_estimate", "leave_one_out", "make", "mean_baseline", "names", "policy_loss", "register"]
