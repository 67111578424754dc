"""Algorithms turn scored groups into a loss. Built-ins register by name on import (`rlvr.algorithms.registry`);
plugins add more through the `rlvr.algorithms` entry-point group (entry-point name = algorithm name, object =
factory).

    algo = rlvr.algorithms.make("dapo", eps_high=0.3)
    groups = algo.select(groups)                       # identity, or DAPO's dynamic-sampling filter
    A = algo.advantages(rewards)                       # [B, G] -> [B, G]
    loss, metrics = algo.loss(logp, old_logp, ref_logp, A.flatten(), mask)
"""

from rlvr.algorithms import cispo, dapo, dr_grpo, grpo, gspo, reinforce, rloo  # noqa: F401  (they register)
from rlvr.algorithms.advantages import group_metrics, group_normalised, leave_one_out, mean_baseline
from rlvr.algorithms.base import Algorithm
from rlvr.algorithms.core import PolicyLoss, aggregate, kl_estimate, policy_loss
from rlvr.algorithms.registry import ALGORITHMS, make, names, register

__all__ = ["ALGORITHMS", "Algorithm", "PolicyLoss", "aggregate", "group_metrics", "group_normalised",
           "kl_estimate", "leave_one_out", "make", "mean_baseline", "names", "policy_loss", "register"]
