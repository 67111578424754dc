"""Dr. GRPO, GRPO done right (Liu et al., 2025, "Understanding R1-Zero-Like Training", arXiv:2503.20783).
Drops GRPO's two biases: the std division of the advantage and the 1/|o_i| length normaliser.

    A_hat_i = r_i - mean(r)
    L = -1/G sum_i 1/MAX_TOKENS sum_l min(rho_i^l A_hat_i, clip(rho_i^l, 1 - eps, 1 + eps) A_hat_i)

MAX_TOKENS (`norm_constant`) is any constant; the paper uses the generation budget, so the default stands for
it: the trainer replaces it with its max new tokens (1024 on its own); a constant given explicitly stays.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from rlvr.algorithms.advantages import mean_baseline
from rlvr.algorithms.base import Algorithm
from rlvr.algorithms.core import MAX_TOKENS, Aggregation
from rlvr.algorithms.registry import register


@register("dr_grpo")
@dataclass
class DrGRPO(Algorithm):
    eps_low: float = 0.2  # eps
    eps_high: float = 0.2
    beta: float = 0.0
    aggregation: Aggregation = "seq-mean-token-sum-norm"  # 1/G sum_i 1/MAX_TOKENS sum_l
    norm_constant: float = MAX_TOKENS  # the generation budget

    def advantages(self, rewards: Tensor) -> Tensor:
        return mean_baseline(rewards)  # A_hat_i = r_i - mean(r), no std
