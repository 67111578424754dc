"""REINFORCE with a group-mean baseline (Williams, 1992; the G -> infinity limit of GRPO without the std).

    A_hat_i = r_i - mean_j(r_j)
    L = -1/G sum_i A_hat_i log pi_theta(o_i | q) = -1/G sum_i sum_l A_hat_i log pi_theta(o_i^l | q, o_i^<l)

The policy-gradient term is rho_i^l A_hat_i with no clip (eps = inf) and the token sum per sequence: at
rho = 1 (one update per batch) its gradient is exactly the REINFORCE estimator above.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from rlvr.algorithms.advantages import mean_baseline
from rlvr.algorithms.base import Algorithm
from rlvr.algorithms.core import Aggregation
from rlvr.algorithms.registry import register


@register("reinforce")
@dataclass
class Reinforce(Algorithm):
    eps_low: float = float("inf")  # no clip
    eps_high: float = float("inf")
    aggregation: Aggregation = "seq-mean-token-sum-norm"  # 1/G sum_i sum_l: log pi(o_i|q) is a token sum
    norm_constant: float = 1.0

    def advantages(self, rewards: Tensor) -> Tensor:
        return mean_baseline(rewards)  # A_hat_i = r_i - mean(r)
