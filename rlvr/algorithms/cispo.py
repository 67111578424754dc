"""CISPO, Clipped IS-weight Policy Optimization (MiniMax, 2025, MiniMax-M1, arXiv:2506.13585). Clips the
importance-sampling weight, not the update: every token keeps its gradient, weighted by a bounded, stop-gradient
ratio. GRPO's advantage, token-level normalisation, no KL.

    r_hat_i^l = clip(rho_i^l, 1 - eps_low^IS, 1 + eps_high^IS)
    L = -1/sum_i |o_i| sum_i sum_l sg(r_hat_i^l) A_hat_i log pi_theta(o_i^l | q, o_i^<l)

The paper sets no lower bound (eps_low^IS large; here 1, so the bound is 0 <= rho) and tunes only eps_high^IS,
whose value it does not publish; 0.28 follows DAPO's clip-higher.
"""

from __future__ import annotations

from dataclasses import dataclass

from rlvr.algorithms.core import Aggregation, Objective
from rlvr.algorithms.grpo import GRPO
from rlvr.algorithms.registry import register


@register("cispo")
@dataclass
class CISPO(GRPO):
    objective: Objective = "cispo"  # sg(r_hat) A_hat log pi
    eps_low: float = 1.0  # eps_low^IS: no lower bound
    eps_high: float = 0.28  # eps_high^IS
    beta: float = 0.0
    aggregation: Aggregation = "token-mean"  # 1/sum_i |o_i| sum_i sum_l
