"""GRPO, Group Relative Policy Optimization (Shao et al., 2024, DeepSeekMath, arXiv:2402.03300).

    A_hat_i = (r_i - mean(r)) / (std(r) + eps)
    rho_i^l = pi_theta(o_i^l | q, o_i^<l) / pi_theta_old(o_i^l | q, o_i^<l)
    L = -1/G sum_i 1/|o_i| sum_l [ min(rho_i^l A_hat_i, clip(rho_i^l, 1 - eps, 1 + eps) A_hat_i)
                                   - beta D_KL(pi_theta || pi_ref) ]
    D_KL per token (k3) = pi_ref / pi_theta - log(pi_ref / pi_theta) - 1
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from rlvr.algorithms.advantages import group_normalised
from rlvr.algorithms.base import Algorithm
from rlvr.algorithms.core import KL, Aggregation
from rlvr.algorithms.registry import register


@register("grpo")
@dataclass
class GRPO(Algorithm):
    eps_low: float = 0.2  # eps
    eps_high: float = 0.2
    beta: float = 0.04
    kl: KL = "k3"
    aggregation: Aggregation = "seq-mean-token-mean"  # 1/G sum_i 1/|o_i| sum_l
    std_eps: float = 1e-6  # eps of the advantage's denominator

    def advantages(self, rewards: Tensor) -> Tensor:
        return group_normalised(rewards, self.std_eps)  # A_hat_i = (r_i - mean(r)) / (std(r) + eps)
