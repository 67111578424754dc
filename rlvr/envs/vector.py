"""GroupVectorEnv: B prompts x G completions as one Gymnasium VectorEnv of B*G slots, where each block of G
consecutive slots shares one problem. `step` scores all completions through an executor (a process pool by
default) and every episode ends; call `reset` for the next batch (autoreset is disabled)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from rlvr.envs.prompt_env import PromptEnv
from rlvr.types import Completion, Group, Problem
from rlvr.verifiers.base import Executor


class GroupVectorEnv(VectorEnv):
    """Grouped episodes over one PromptEnv: slot `b * G + g` holds completion g of problem b.

    `infos` after `step` carries per-slot arrays `verdict`, `correct`, `problem_id` and `problem` (objects);
    `groups(actions, infos)` turns them into `Group`s for the algorithms."""

    metadata = {"autoreset_mode": AutoresetMode.DISABLED}

    def __init__(self, env: PromptEnv, num_prompts: int, group_size: int, executor: Executor) -> None:
        if num_prompts < 1 or group_size < 1:
            raise ValueError(f"num_prompts and group_size must be >= 1, got {num_prompts}, {group_size}")
        self.env, self.executor = env, executor
        self.num_prompts, self.group_size = num_prompts, group_size
        self.num_envs = num_prompts * group_size
        self.single_observation_space, self.single_action_space = env.observation_space, env.action_space
        self.observation_space = batch_space(env.observation_space, self.num_envs)
        self.action_space = batch_space(env.action_space, self.num_envs)
        self.problems: list[Problem] = []
        self._stepped = True

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[tuple, dict]:
        """Draw B problems from `np_random` (or pose `options["problem_ids"]`, or the Problems in
        `options["problems"]`, e.g. a held-out set), each repeated G times."""
        super().reset(seed=seed)
        options = options or {}
        given = options.get("problems", options.get("problem_ids"))
        if given is not None and len(given) != self.num_prompts:
            key = "problems" if "problems" in options else "problem_ids"
            raise ValueError(f"options[{key!r}] has {len(given)} entries, expected num_prompts={self.num_prompts}")
        source = self.env.source
        if "problems" in options:
            self.problems = list(given)
        elif given is not None:
            self.problems = [source.get(i) for i in given]
        else:
            self.problems = [source.sample(self.np_random) for _ in range(self.num_prompts)]
        self._stepped = False
        prompts = [self.env.format_prompt(p) for p in self.problems]
        obs = tuple(prompt for prompt in prompts for _ in range(self.group_size))
        messages = [self.env.messages(p) for p in self.problems]
        return obs, {"problem_id": self._per_slot([p.id for p in self.problems]),
                     "messages": self._per_slot(messages)}

    def step(self, actions: Sequence[str | Completion]) -> tuple[tuple, np.ndarray, np.ndarray, np.ndarray, dict]:
        """Score all B*G completions; every episode terminates, truncated where generation hit its length limit."""
        if self._stepped:
            raise RuntimeError("step() needs a reset() first: every episode ends after one step")
        if len(actions) != self.num_envs:
            raise ValueError(f"expected {self.num_envs} completions (num_prompts x group_size), got {len(actions)}")
        completions = [Completion.coerce(a) for a in actions]
        slots = [p for p in self.problems for _ in range(self.group_size)]
        verdicts = self.executor.map(self.env.verifier, list(zip(slots, completions)))
        self._stepped = True
        rewards = np.array([v.reward for v in verdicts], dtype=np.float32)
        terminated = np.ones(self.num_envs, dtype=bool)
        truncated = np.array([c.truncated for c in completions], dtype=bool)
        obs = tuple(self.env.format_prompt(p) for p in slots)
        infos = {"verdict": _objects(verdicts), "correct": np.array([v.correct for v in verdicts]),
                 "problem_id": self._per_slot([p.id for p in self.problems]), "problem": _objects(slots)}
        return obs, rewards, terminated, truncated, infos

    def groups(self, actions: Sequence[str | Completion], infos: dict) -> list[Group]:
        """The step's B groups, in problem order."""
        return to_groups(actions, infos, self.group_size)

    def _per_slot(self, values: list) -> np.ndarray:
        return _objects([v for v in values for _ in range(self.group_size)])

    def close_extras(self, **kwargs: Any) -> None:
        self.executor.close()
        self.env.close()


def to_groups(actions: Sequence[str | Completion], infos: dict, group_size: int) -> list[Group]:
    """Split a grouped step's actions and `infos` (with `problem` and `verdict` arrays) into `Group`s of G."""
    n = len(actions)
    if n % group_size:
        raise ValueError(f"{n} completions do not split into groups of {group_size}")
    completions = [Completion.coerce(a) for a in actions]
    problems, verdicts = infos["problem"], infos["verdict"]
    return [Group(problem=problems[i], completions=completions[i:i + group_size],
                  verdicts=list(verdicts[i:i + group_size])) for i in range(0, n, group_size)]


def _objects(values: list) -> np.ndarray:
    """A 1-D object array (np.array would try to nest lists and dataclasses)."""
    out = np.empty(len(values), dtype=object)
    for i, value in enumerate(values):
        out[i] = value
    return out
