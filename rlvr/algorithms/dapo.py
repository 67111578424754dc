"""DAPO, Decoupled clip and Dynamic sAmpling Policy Optimization (Yu et al., 2025, arXiv:2503.14476).
GRPO's advantage with clip-higher, token-level normalisation, no KL, and dynamic sampling.

    L = -1/sum_i |o_i| sum_i sum_l min(rho_i^l A_hat_i, clip(rho_i^l, 1 - eps_low, 1 + eps_high) A_hat_i)
    subject to 0 < |{o_i : correct(o_i)}| < G

Overlong reward shaping is a verifier ("overlong"); dropping truncated completions is `Verdict.mask`.
"""

from __future__ import annotations

from dataclasses import dataclass

from rlvr.algorithms.core import Aggregation
from rlvr.algorithms.grpo import GRPO
from rlvr.algorithms.registry import register


@register("dapo")
@dataclass
class DAPO(GRPO):
    eps_low: float = 0.2  # eps_low
    eps_high: float = 0.28  # eps_high > eps_low: clip-higher lets unlikely tokens rise
    beta: float = 0.0  # no KL penalty
    aggregation: Aggregation = "token-mean"  # 1/sum_i |o_i| sum_i sum_l
    dynamic_sampling: bool = True  # keep groups with 0 < #correct < G
    max_gen_rounds: int = 10  # generation rounds allowed to fill one batch with such groups
