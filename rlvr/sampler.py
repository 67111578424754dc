"""Which training problems a run draws (`TrainConfig.sampler`): uniformly, as the env's source does on its own, or
at the learning frontier. A group whose G answers are all right or all wrong carries no policy gradient under
group-normalised advantages, so problems the policy always or never solves are wasted generation; the frontier
sampler tracks each difficulty level's (or each problem's) recent pass rate and draws where it is in between, in
the spirit of prime-rl's difficulty pools and reasoning-gym's curricula."""

from __future__ import annotations

from typing import Any

import numpy as np

from rlvr.envs.tasks.base import TaskSource
from rlvr.types import Group, Problem


class UniformSampler:
    """The source's own draws: `source.sample(rng)` B times (what the env's `reset` does without this)."""

    def __init__(self, source: TaskSource) -> None:
        self.source = source

    def draw(self, n: int, rng: np.random.Generator) -> list[Problem]:
        return [self.source.sample(rng) for _ in range(n)]

    def update(self, groups: list[Group]) -> None:
        """Learn from the scored groups of a round (nothing to learn here)."""

    def metrics(self) -> dict[str, float]:
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class FrontierSampler(UniformSampler):
    """Draws bucket b with probability proportional to `floor + 4 p_b (1 - p_b)`, p_b an exponential moving average
    (weight `1 - decay` per group) of the pass rate of b's groups, starting at `prior`: most where p_b is near 1/2,
    a little (`floor`) everywhere so that a level can come back. Buckets are the source's difficulty levels
    (`by="level"`: a source with `levels` and `sample_level(rng, level)`, such as Arithmetic over several levels),
    or the problems of a finite source (`by="problem"`: `source.problems`)."""

    def __init__(self, source: TaskSource, by: str = "level", decay: float = 0.8, floor: float = 0.05,
                 prior: float = 0.5) -> None:
        super().__init__(source)
        if by == "level":
            if not (hasattr(source, "levels") and hasattr(source, "sample_level")):
                raise ValueError(f"sampler 'frontier' by level needs a source with levels and sample_level "
                                 f"({type(source).__name__} has neither: use by='problem' for a finite data set)")
            self.buckets: list[Any] = list(source.levels)
        elif by == "problem":
            if not hasattr(source, "problems"):
                raise ValueError(f"sampler 'frontier' by problem needs a finite source ({type(source).__name__} "
                                 f"generates its problems: use by='level')")
            self.buckets = [p.id for p in source.problems]
        else:
            raise ValueError(f"sampler 'frontier': by must be 'level' or 'problem', got {by!r}")
        if not (0 <= decay < 1 and floor > 0 and 0 <= prior <= 1):
            raise ValueError(f"sampler 'frontier': need 0 <= decay < 1, floor > 0, 0 <= prior <= 1, got "
                             f"{decay}, {floor}, {prior}")
        self.by, self.decay, self.floor = by, decay, floor
        self.pass_rate = np.full(len(self.buckets), float(prior))
        self.index = {b: i for i, b in enumerate(self.buckets)}

    def weights(self) -> np.ndarray:
        """The draw probability of each bucket."""
        w = self.floor + 4 * self.pass_rate * (1 - self.pass_rate)
        return w / w.sum()

    def draw(self, n: int, rng: np.random.Generator) -> list[Problem]:
        picks = rng.choice(len(self.buckets), size=n, p=self.weights())
        if self.by == "problem":
            return [self.source.problems[i] for i in picks]
        return [self.source.sample_level(rng, self.buckets[i]) for i in picks]

    def bucket(self, problem: Problem) -> int | None:
        return self.index.get(problem.meta.get("level") if self.by == "level" else problem.id)

    def update(self, groups: list[Group]) -> None:
        for group in groups:
            i = self.bucket(group.problem)
            if i is not None:
                accuracy = float(np.mean([v.correct for v in group.verdicts]))
                self.pass_rate[i] = self.decay * self.pass_rate[i] + (1 - self.decay) * accuracy

    def metrics(self) -> dict[str, float]:
        """Per level, its tracked pass rate and draw probability (by problem: their spread)."""
        w = self.weights()
        if self.by == "problem":
            return {"sampler/pass_rate_mean": float(self.pass_rate.mean()), "sampler/frontier_frac": float(
                np.mean((self.pass_rate > 0.1) & (self.pass_rate < 0.9)))}
        return {**{f"sampler/pass_rate_{b}": float(p) for b, p in zip(self.buckets, self.pass_rate)},
                **{f"sampler/prob_{b}": float(x) for b, x in zip(self.buckets, w)}}

    def state_dict(self) -> dict[str, Any]:
        return {"buckets": list(self.buckets), "pass_rate": self.pass_rate.tolist()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("buckets") != list(self.buckets):
            raise ValueError("the checkpoint's sampler tracked other buckets (levels or problems) than this run's")
        self.pass_rate = np.array(state["pass_rate"], dtype=np.float64)


SAMPLERS = {"uniform": UniformSampler, "frontier": FrontierSampler}


def make_sampler(name: str, source: TaskSource, **kwargs: Any) -> UniformSampler:
    if name not in SAMPLERS:
        raise ValueError(f"sampler must be one of {', '.join(map(repr, SAMPLERS))}, got {name!r}")
    return SAMPLERS[name](source, **kwargs)
