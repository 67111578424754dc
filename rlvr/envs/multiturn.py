"""Multi-turn episodes as ordinary Gymnasium envs: `reset` poses a task, each `step` takes one model turn and returns
the environment's reply (a tool result, feedback, the next question) as the next observation, until the task is
finished (`terminated`, with the final `Verdict` in `info["verdict"]`) or `max_turns` have passed (`truncated`).
`info["messages"]` is the conversation so far as chat messages, `info["reply"]` the environment's new ones.

`MultiTurnEnv` holds the protocol; a task says how it answers a turn by overriding `reply`. `ToolEnv` gives any
single-turn task tools; `GuessNumber` finds a hidden integer from "higher"/"lower" replies; `CodeFeedback` gives a
code task several attempts, each failed one answered with the sandbox's error."""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym

from rlvr.envs.prompt_env import PromptEnv
from rlvr.envs.tasks.base import ProceduralSource, Split
from rlvr.tools import ToolCall, Toolbox
from rlvr.types import Completion, Message, Problem, Verdict


@dataclass
class Reply:
    """The environment's answer to one model turn: its messages, the step's reward, and whether the task is
    finished (then `verdict` judges the episode)."""

    messages: list[Message] = field(default_factory=list)
    reward: float = 0.0
    finished: bool = False
    verdict: Verdict | None = None


class MultiTurnEnv(gym.Env[str, str]):
    """The episode protocol over a single-turn `task` (its problems, prompt template, system prompt and verifier):
    observations and actions are text; `tools` (JSON schemas) are what the chat template should show the model."""

    metadata = {"render_modes": ["ansi"], "render_fps": 1}
    tools: list[dict[str, Any]] | None = None

    def __init__(self, task: PromptEnv, max_turns: int = 4, render_mode: str | None = None) -> None:
        if max_turns < 1:
            raise ValueError(f"max_turns must be >= 1, got {max_turns}")
        if render_mode not in (None, "ansi"):
            raise ValueError(f"render_mode must be None or 'ansi', got {render_mode!r}")
        self.task, self.max_turns, self.render_mode = task, max_turns, render_mode
        self.observation_space = task.observation_space
        self.action_space = task.action_space
        self.problem: Problem | None = None
        self.conversation: list[Message] = []
        self.turns = 0

    def reply(self, turn: str) -> Reply:
        """How the task answers the model's turn `turn` (the conversation so far is `self.conversation`)."""
        raise NotImplementedError

    def demonstration(self, problem: Problem, use_tools: bool) -> list[str]:
        """The model's turns of a gold episode of `problem` (with the env's tools, or without), for a supervised
        warm-start; a task that can write one overrides this."""
        raise NotImplementedError(f"{type(self).__name__} writes no demonstrations for a warm-start; train a "
                                  "model that can already play it, with warmstart_steps=0")

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict]:
        """Pose a problem (drawn, or `options["problem"]` / `options["problem_id"]`)."""
        super().reset(seed=seed)
        options = options or {}
        source = self.task.source
        if "problem" in options:
            self.problem = options["problem"]
        elif options.get("problem_id") is not None:
            self.problem = source.get(options["problem_id"])
        else:
            self.problem = source.sample(self.np_random)
        self.conversation, self.turns = self.task.messages(self.problem), 0
        info = {"problem_id": self.problem.id, "messages": list(self.conversation), "tools": self.tools}
        return self.task.format_prompt(self.problem), info

    def step(self, action: str | Completion) -> tuple[str, float, bool, bool, dict]:
        if self.problem is None:
            raise RuntimeError("call reset() before step()")
        text = Completion.coerce(action).text
        if len(text) > self.action_space.max_length:
            raise ValueError(f"a turn of {len(text)} characters exceeds max_completion_chars="
                             f"{self.action_space.max_length}")
        self.conversation.append({"role": "assistant", "content": text})
        self.turns += 1
        reply = self.reply(text)
        self.conversation.extend(reply.messages)
        truncated = not reply.finished and self.turns >= self.max_turns
        info: dict[str, Any] = {"problem_id": self.problem.id, "messages": list(self.conversation),
                                "reply": reply.messages, "turns": self.turns}
        if reply.finished or truncated:  # a truncated episode keeps its last turn's verdict, if the task gave one
            info["verdict"] = reply.verdict or Verdict(0.0, False, error=f"not finished within {self.max_turns} turns")
            info["correct"] = info["verdict"].correct
        observation = "\n".join(m["content"] for m in reply.messages)[:self.observation_space.max_length]
        return observation, float(reply.reward), reply.finished, truncated, info

    def render(self) -> str | None:
        if self.render_mode != "ansi" or self.problem is None:
            return None
        return f"[{self.problem.id}]\n" + "\n".join(f"{m['role']}: {m['content']}" for m in self.conversation)


class ToolEnv(MultiTurnEnv):
    """A single-turn task with tools: a turn with tool calls gets their results (or errors) back; a turn without
    one is the final answer, scored by the task's verifier (reward 1 for a right answer; no reward otherwise).
    `solution(problem)`, when given, names the calls that solve a problem: the warm-start's demonstrations make
    them, then answer with the gold answer."""

    def __init__(self, task: PromptEnv, tools: Sequence[Callable[..., Any]], max_turns: int = 4,
                 tool_timeout: float = 5.0, parser: str = "hermes",
                 solution: Callable[[Problem], list[ToolCall]] | None = None, render_mode: str | None = None) -> None:
        super().__init__(task, max_turns=max_turns, render_mode=render_mode)
        self.toolbox = Toolbox(tools, timeout=tool_timeout, parser=parser)
        self.tools = self.toolbox.schemas
        self.solution = solution

    def demonstration(self, problem: Problem, use_tools: bool) -> list[str]:
        """The solution's calls in one turn, then the gold answer; or (without tools, or no solution) the gold
        answer at once."""
        if problem.answer is None:
            raise ValueError(f"problem {problem.id!r} has no gold answer to demonstrate")
        if use_tools and self.solution is not None:
            return [self.toolbox.write(self.solution(problem)), problem.answer]
        return [problem.answer]

    def reply(self, turn: str) -> Reply:
        calls = self.toolbox.calls(turn)
        if calls:
            return Reply([self.toolbox.run(call) for call in calls])
        verdict = self.task.verifier(self.problem, Completion(turn))
        return Reply([], verdict.reward, True, verdict)


class HiddenNumbers(ProceduralSource):
    """A hidden integer in [1, high] per problem (its id names the game, never the number); every prompt states the
    same rules, so the held-out split is by game."""

    name = "guess-number"
    default_verifier = "math"

    def __init__(self, high: int = 100, max_turns: int = 7, *, split: Split = "train",
                 heldout_fraction: float = 0.1, seed: int = 0) -> None:
        if high < 2:
            raise ValueError(f"high must be >= 2, got {high}")
        super().__init__(split=split, heldout_fraction=heldout_fraction, seed=seed)
        self.high, self.max_turns = high, max_turns

    def generate(self, key: int) -> Problem:
        number = random.Random(key).randint(1, self.high)
        prompt = (f"I am thinking of an integer between 1 and {self.high}. Guess it: reply with one integer; I say "
                  f"'higher' or 'lower' until you find it, within {self.max_turns} guesses.")
        return Problem(id=f"guess-{self.high}-{key}", prompt=prompt, answer=str(number))

    def key_of(self, problem_id: str) -> int:
        return int(problem_id.rsplit("-", 1)[1])

    def content_key(self, problem: Problem) -> str:
        return problem.id


class GuessNumber(MultiTurnEnv):
    """Find a hidden integer in [1, N] from 'higher'/'lower' replies within K turns: reward 1 when a guess is
    right, 0 when the turns run out; a turn without an integer is told so (and counts)."""

    def reply(self, turn: str) -> Reply:
        numbers = re.findall(r"-?\d+", turn)
        if not numbers:
            return Reply([{"role": "user", "content": "Reply with one integer."}])
        guess, target = int(numbers[-1]), int(self.problem.answer)
        if guess == target:
            return Reply([], 1.0, True, Verdict(1.0, True, extracted=str(guess)))
        return Reply([{"role": "user", "content": "higher" if guess < target else "lower"}])


class CodeFeedback(MultiTurnEnv):
    """Code problems with up to `max_turns` attempts: each turn is a full attempt, run against the tests in the
    sandbox by the task's `code` verifier; a passing one ends the episode with its reward, a failing one gets the
    first failing test's error back (and, when it was the last, ends it truncated with that verdict)."""

    def reply(self, turn: str) -> Reply:
        verdict = self.task.verifier(self.problem, Completion(turn))
        if verdict.correct:
            return Reply([], verdict.reward, True, verdict)
        feedback = f"That did not pass: {verdict.error}. Reply with the whole corrected function."
        return Reply([{"role": "user", "content": feedback}], 0.0, False, verdict)
