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

from transformers import PreTrainedTokenizerBase

from rlvr.chat import ChatRenderer
from rlvr.envs.multiturn import MultiTurnEnv
from rlvr.rollout.base import Engine
from rlvr.sampling import Sampling
from rlvr.types import Completion, Group, Message, Problem, Verdict

Return = Literal["sum", "final"]


@dataclass
class Episode:
    """One episode of `env` as one token sequence after its first prompt `prompt_ids`: `take` appends a model turn
    and the rendering of the env's reply, until the env ends it (or its sequence reaches `max_tokens`); then
    `verdict` holds the episode's, its reward the return (`episode_return`: "sum" of step rewards, or "final")."""

    env: MultiTurnEnv
    renderer: ChatRenderer
    max_tokens: int
    episode_return: Return
    prompt_ids: list[int]
    history: list[Message]
    ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    mask: list[int] = field(default_factory=list)
    turns: list[str] = field(default_factory=list)
    tool_calls: int = 0
    total: float = 0.0
    verdict: Verdict | None = None
    finish: str = "stop"

    @classmethod
    def start(cls, env: MultiTurnEnv, renderer: ChatRenderer, problem: Problem, max_tokens: int,
              episode_return: Return = "sum") -> Episode:
        """Reset `env` to `problem` and render the first prompt."""
        if episode_return not in ("sum", "final"):
            raise ValueError(f"episode_return must be 'sum' or 'final', got {episode_return!r}")
        _, info = env.reset(options={"problem": problem})
        return cls(env, renderer, max_tokens, episode_return, renderer.prompt(info["messages"]), info["messages"])

    def take(self, turn: Completion) -> None:
        """Append the model's `turn` (its ids as sampled, its log-probs), step the env with it, and append the
        rendered reply; or end the episode, when the env terminates or truncates it or the token budget is spent."""
        self._add(turn.token_ids, turn.logprobs, sampled=True)
        self.turns.append(turn.text)
        _, reward, terminated, truncated, info = self.env.step(turn)
        self.total += reward
        if terminated or truncated or len(self.ids) >= self.max_tokens:
            verdict = info.get("verdict") or Verdict(0.0, False, error=f"token budget of {self.max_tokens} spent")
            self.verdict = dataclasses.replace(verdict, reward=self.total if self.episode_return == "sum" else reward)
            self.finish = "length" if (truncated or "verdict" not in info) else turn.finish_reason
            return
        self.tool_calls += sum(m["role"] == "tool" for m in info["reply"])
        # history: the conversation before this turn; info["messages"]: with the turn and the reply
        self._add(self.renderer.after_model_turn(self.history, turn.text, turn.token_ids, info["reply"]), None,
                  sampled=False)
        self.history = info["messages"]

    def completion(self) -> Completion:
        """The whole sequence after the first prompt, the model's turns joined as its text."""
        return Completion("\n".join(self.turns), self.ids, self.logprobs, self.finish, self.mask)

    def _add(self, ids: list[int], logprobs: list[float] | None, sampled: bool) -> None:
        self.ids += ids
        self.logprobs += logprobs if logprobs is not None else [0.0] * len(ids)
        self.mask += [int(sampled)] * len(ids)


def run_episodes(engine: Engine, renderer: ChatRenderer, envs: Sequence[MultiTurnEnv], problems: Sequence[Problem],
                 group_size: int, sampling: Sampling, max_tokens: int, episode_return: Return = "sum",
                 ) -> tuple[list[Group], list[Episode]]:
    """Play `group_size` episodes of each problem, `envs[b * group_size + g]` playing episode g of problem b; returns
    the groups (each completion an episode's whole sequence after its first prompt, each verdict the episode's with
    the return as reward) and the episodes themselves (their first-prompt ids, turns and tool calls)."""
    if len(envs) != len(problems) * group_size:
        raise ValueError(f"{len(envs)} envs for {len(problems)} problems x {group_size} episodes")
    episodes = [Episode.start(env, renderer, problems[i // group_size], max_tokens, episode_return)
                for i, env in enumerate(envs)]
    while active := [e for e in episodes if e.verdict is None]:
        outputs = engine.generate([e.prompt_ids + e.ids for e in active], 1, sampling)
        for episode, [turn] in zip(active, outputs):
            episode.take(turn)
    groups = []
    for b, problem in enumerate(problems):
        members = episodes[b * group_size:(b + 1) * group_size]
        groups.append(Group(problem, [e.completion() for e in members], [e.verdict for e in members]))
    return groups, episodes


def demonstration(env: MultiTurnEnv, renderer: ChatRenderer, tokenizer: PreTrainedTokenizerBase, problem: Problem,
                  turns: Sequence[str], max_tokens: int) -> Episode:
    """An episode of `problem` whose model turns are the given texts (each tokenized and ended with the stop token
    the template ends an assistant turn with), the env answering them as in a rollout: a supervised target in
    exactly the token form RL samples."""
    episode = Episode.start(env, renderer, problem, max_tokens)
    for text in turns:
        if episode.verdict is not None:
            raise ValueError(f"the demonstration of {problem.id!r} has turns after its episode ended")
        ids = tokenizer(text, add_special_tokens=False)["input_ids"] + [renderer.turn_stop_id(episode.history, text)]
        episode.take(Completion(text, ids, None, "stop"))
    return episode
