"""The plain dataclasses that flow through rlvr: a Problem is posed, a Completion answers it, a Verdict scores
it, and a Group gathers the G completions of one problem, the unit every algorithm learns from."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Union

Message = dict[str, str]
Prompt = Union[str, list[Message]]
FinishReason = Literal["stop", "length"]


@dataclass
class Problem:
    """One task instance: a prompt (text or chat messages) with a gold `answer` (math) or `tests` (code)."""

    id: str
    prompt: Prompt
    answer: str | None = None
    tests: Any = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Completion:
    """A sampled answer: its text and, when an engine produced it, token ids and per-token sampling logprobs. In a
    multi-turn episode the tokens after the first prompt interleave the model's turns with what the environment
    wrote back (tool results, feedback); `loss_mask` says which is which, and only the model's tokens are trained
    on (their `logprobs` are the engine's; the environment's entries there are 0)."""

    text: str
    token_ids: list[int] | None = None
    logprobs: list[float] | None = None
    finish_reason: FinishReason = "stop"
    loss_mask: list[int] | None = None  # per token id: 1 sampled by the model, 0 written by the env; None: all 1
    policy_version: int | None = None  # the learner step whose weights sampled it (set by the trainer's collector)

    @classmethod
    def coerce(cls, action: str | Completion) -> Completion:
        """Accept a plain string wherever a Completion is expected."""
        if isinstance(action, Completion):
            return action
        if isinstance(action, str):
            return cls(text=action)
        raise TypeError(f"expected a str or Completion, got {type(action).__name__}")

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"

    @property
    def num_sampled(self) -> int:
        """How many of the token ids the model sampled (all of them in a single-turn completion)."""
        if self.loss_mask is not None:
            return sum(self.loss_mask)
        return len(self.token_ids) if self.token_ids is not None else 0


@dataclass
class Verdict:
    """A verifier's judgement: the scalar `reward`, whether the answer is `correct`, the reward `parts` of a
    composed verifier, the `extracted` answer, and an `error` that says why it failed (None when it did not)."""

    reward: float
    correct: bool
    parts: dict[str, float] = field(default_factory=dict)
    extracted: str | None = None
    error: str | None = None
    mask: bool = False  # True asks the trainer to drop this completion from the loss (e.g. truncated)


@dataclass
class Group:
    """One problem with its G completions and their verdicts."""

    problem: Problem
    completions: list[Completion]
    verdicts: list[Verdict]

    def __post_init__(self) -> None:
        if len(self.completions) != len(self.verdicts):
            raise ValueError(
                f"group {self.problem.id!r}: {len(self.completions)} completions but {len(self.verdicts)} verdicts"
            )

    @property
    def rewards(self) -> list[float]:
        return [v.reward for v in self.verdicts]

    @property
    def num_correct(self) -> int:
        return sum(v.correct for v in self.verdicts)

    def __len__(self) -> int:
        return len(self.completions)
