"""GSPO, Group Sequence Policy Optimization (Zheng et al., 2025, arXiv:2507.18071). The importance ratio is
the sequence's, length-normalised, and clipped with small bounds; GRPO's advantage, no KL.

    s_i = (pi_theta(o_i | q) / pi_theta_old(o_i | q))^(1/|o_i|) = exp(1/|o_i| sum_l log rho_i^l)
    L_GSPO = -1/G sum_i min(s_i A_hat_i, clip(s_i, 1 - eps_low, 1 + eps_high) A_hat_i)

GSPO-token gives each token its own advantage slot with the same value and gradient direction:

    s_i^l = sg[s_i] * pi_theta(o_i^l | q, o_i^<l) / sg[pi_theta(o_i^l | q, o_i^<l)]
    L_GSPO-token = -1/G sum_i 1/|o_i| sum_l min(s_i^l A_hat_i^l, clip(s_i^l, 1 - eps_low, 1 + eps_high) A_hat_i^l)

With A_hat_i^l = A_hat_i (as here) the two are equal in value and gradient.
"""

from __future__ import annotations

from dataclasses import dataclass

from rlvr.algorithms.core import Aggregation, Ratio
from rlvr.algorithms.grpo import GRPO
from rlvr.algorithms.registry import register


@register("gspo")
@dataclass
class GSPO(GRPO):
    ratio: Ratio = "sequence"  # s_i
    eps_low: float = 3e-4
    eps_high: float = 4e-4
    beta: float = 0.0
    aggregation: Aggregation = "seq-mean"  # 1/G sum_i


@register("gspo_token")
@dataclass
class GSPOToken(GSPO):
    ratio: Ratio = "sequence_token"  # s_i^l
    aggregation: Aggregation = "seq-mean-token-mean"  # 1/G sum_i 1/|o_i| sum_l
