"""RLOO, REINFORCE leave-one-out (Kool et al., 2019; Ahmadian et al., 2024, arXiv:2402.14740).

    A_hat_i = r_i - 1/(G-1) sum_{j != i} r_j
    L = -1/G sum_i A_hat_i log pi_theta(o_i | q)

The whole completion is one action: as for `reinforce`, the term is rho_i^l A_hat_i unclipped, summed over
the completion's tokens, which at rho = 1 is the estimator above.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from rlvr.algorithms.advantages import leave_one_out
from rlvr.algorithms.base import Algorithm
from rlvr.algorithms.core import Aggregation
from rlvr.algorithms.registry import register


@register("rloo")
@dataclass
class RLOO(Algorithm):
    eps_low: float = float("inf")  # no clip
    eps_high: float = float("inf")
    aggregation: Aggregation = "seq-mean-token-sum-norm"  # 1/G sum_i sum_l
    norm_constant: float = 1.0

    def advantages(self, rewards: Tensor) -> Tensor:
        return leave_one_out(rewards)  # A_hat_i = r_i - mean_{j != i}(r_j)
