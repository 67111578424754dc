"""Multi-turn rollouts: B problems x G episodes, stepped turn by turn through their Gymnasium envs. Every active
episode's next turn is generated in one engine call, with its history given as token ids; episodes that finish
leave the batch. Each episode is kept as one token sequence: the engine's ids for the model's turns, exactly as
sampled, and between them the chat template's rendering of the environment's messages (`rlvr.chat`), marked 0 in
`Completion.loss_mask` so that the learner trains on the model's tokens only."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from rlvr.chat import ChatRenderer
from rlvr.envs.multiturn import MultiTurnEnv
from rlvr.rollout.base import Engine
from rlvr.sampling import Sampling
from rlvr.types import Completion, Group, Message, Problem, Verdict

Return = Literal["sum", "final"]


@dataclass
class _Episode:
    env: MultiTurnEnv
    prompt_ids: list[int]
    history: list[Message]
    ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    mask: list[int] = field(default_factory=list)
    turns: list[str] = field(default_factory=list)
    total: float = 0.0
    verdict: Verdict | None = None
    finish: str = "stop"

    def add(self, ids: list[int], logprobs: list[float] | None, sampled: bool) -> None:
        self.ids += ids
        self.logprobs += logprobs if logprobs is not None else [0.0] * len(ids)
        self.mask += [int(sampled)] * len(ids)


def run_episodes(engine: Engine, renderer: ChatRenderer, envs: Sequence[MultiTurnEnv], problems: Sequence[Problem],
                 group_size: int, sampling: Sampling, max_tokens: int, episode_return: Return = "sum",
                 ) -> tuple[list[Group], list[list[int]]]:
    """Play `group_size` episodes of each problem, `envs[b * group_size + g]` playing episode g of problem b; returns
    the groups (each completion the episode's whole sequence after its first prompt, each verdict the episode's
    with its reward replaced by the return: the sum of step rewards, or the final step's) and each episode's
    first-prompt ids. An episode also ends once its sequence reaches `max_tokens` (its verdict then says so)."""
    if len(envs) != len(problems) * group_size:
        raise ValueError(f"{len(envs)} envs for {len(problems)} problems x {group_size} episodes")
    episodes = []
    for i, env in enumerate(envs):
        _, info = env.reset(options={"problem": problems[i // group_size]})
        episodes.append(_Episode(env, renderer.prompt(info["messages"]), info["messages"]))
    while active := [e for e in episodes if e.verdict is None]:
        outputs = engine.generate([e.prompt_ids + e.ids for e in active], 1, sampling)
        for episode, [turn] in zip(active, outputs):
            episode.add(turn.token_ids, turn.logprobs, sampled=True)
            episode.turns.append(turn.text)
            _, reward, terminated, truncated, info = episode.env.step(turn)
            episode.total, last = episode.total + reward, reward
            if terminated or truncated or len(episode.ids) >= max_tokens:
                verdict = info.get("verdict") or Verdict(0.0, False, error=f"token budget of {max_tokens} spent")
                episode.verdict = dataclasses.replace(verdict, reward=episode.total if episode_return == "sum"
                                                      else last)
                episode.finish = "length" if (truncated or "verdict" not in info) else turn.finish_reason
                continue
            # history: the conversation before this turn; info["messages"]: with the turn and the reply
            episode.add(renderer.after_model_turn(episode.history, turn.text, turn.token_ids, info["reply"]), None,
                        sampled=False)
            episode.history = info["messages"]
    groups = []
    for b, problem in enumerate(problems):
        members = episodes[b * group_size:(b + 1) * group_size]
        completions = [Completion("\n".join(e.turns), e.ids, e.logprobs, e.finish, e.mask) for e in members]
        groups.append(Group(problem, completions, [e.verdict for e in members]))
    return groups, [e.prompt_ids for e in episodes]
