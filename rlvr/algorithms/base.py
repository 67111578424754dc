"""The Algorithm interface: a config dataclass (the shared policy loss's options plus sampling options) with
`select(groups)`, `advantages(rewards[B, G])` and `loss(...)`."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from torch import Tensor

from rlvr.algorithms.core import PolicyLoss
from rlvr.types import Group


@dataclass
class Algorithm(PolicyLoss, ABC):
    """An RLVR algorithm. The trainer calls `select` on freshly scored groups, `advantages` on their rewards,
    then `loss` (inherited from PolicyLoss) on each minibatch; it computes reference log-probs only if beta > 0."""

    dynamic_sampling: bool = False  # keep only groups with 0 < #correct < G (DAPO)
    max_gen_rounds: int = 1  # with dynamic sampling: at most this many generation rounds to fill one batch

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_gen_rounds < 1:
            raise ValueError(f"{type(self).__name__}: max_gen_rounds must be >= 1, got {self.max_gen_rounds!r}")

    def select(self, groups: list[Group]) -> list[Group]:
        """The groups to learn from: all of them, or with dynamic sampling those with 0 < #correct < G, judged
        by each verdict's `correct` (not by a reward that shaping may have moved)."""
        if not self.dynamic_sampling:
            return list(groups)
        return [g for g in groups if 0 < g.num_correct < len(g)]

    @abstractmethod
    def advantages(self, rewards: Tensor) -> Tensor:
        """advantages[B, G] from rewards[B, G]; the trainer flattens them row-major to one per completion."""
