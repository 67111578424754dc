"""PromptEnv: one episode is one prompt, one completion, one reward. `reset` draws a problem and returns its
prompt text; `step` scores a completion with the env's verifier and always terminates."""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from rlvr.envs.spaces import UnicodeText
from rlvr.envs.tasks.base import TaskSource
from rlvr.types import Completion, Message, Problem, Verdict
from rlvr.verifiers import make as make_verifier
from rlvr.verifiers.base import Verifier


class PromptEnv(gym.Env[str, str]):
    """A single-turn verifiable-reward task.

    `template` formats the problem's prompt (`{prompt}` is replaced); `system_prompt`, when given, is added to
    the chat messages in `info["messages"]`, which chat models use instead of the plain observation text.
    `options={"problem_id": ...}` in `reset` picks a problem instead of drawing one."""

    metadata = {"render_modes": ["ansi"], "render_fps": 1}

    def __init__(self, source: TaskSource, verifier: str | Verifier | None = None, *, template: str = "{prompt}",
                 system_prompt: str | None = None, max_prompt_chars: int = 8192,
                 max_completion_chars: int = 32768, render_mode: str | None = None) -> None:
        if "{prompt}" not in template:
            raise ValueError(f"template must contain '{{prompt}}', got {template!r}")
        if render_mode not in (None, "ansi"):
            raise ValueError(f"render_mode must be None or 'ansi', got {render_mode!r}")
        self.source = source
        self.verifier = make_verifier(verifier or source.default_verifier)
        self.template, self.system_prompt = template, system_prompt
        self.observation_space = UnicodeText(max_prompt_chars)
        self.action_space = UnicodeText(max_completion_chars)
        self.render_mode = render_mode
        self.problem: Problem | None = None
        self._last: tuple[str, Verdict] | None = None

    def format_prompt(self, problem: Problem) -> str:
        """The observation: the problem's text (or its last user message) in the template."""
        text = problem.prompt if isinstance(problem.prompt, str) else problem.prompt[-1]["content"]
        prompt = self.template.replace("{prompt}", text)
        if len(prompt) > self.observation_space.max_length:
            raise ValueError(f"problem {problem.id!r}: prompt of {len(prompt)} characters exceeds "
                             f"max_prompt_chars={self.observation_space.max_length}")
        return prompt

    def messages(self, problem: Problem) -> list[Message]:
        """The chat form of the prompt: optional system prompt, the problem's earlier turns, the templated text."""
        history = [] if isinstance(problem.prompt, str) else list(problem.prompt[:-1])
        system = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        return system + history + [{"role": "user", "content": self.format_prompt(problem)}]

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict]:
        super().reset(seed=seed)
        problem_id = (options or {}).get("problem_id")
        self.problem = self.source.get(problem_id) if problem_id is not None else self.source.sample(self.np_random)
        self._last = None
        return self.format_prompt(self.problem), {"problem_id": self.problem.id,
                                                  "messages": self.messages(self.problem)}

    def step(self, action: str | Completion) -> tuple[str, float, bool, bool, dict]:
        if self.problem is None:
            raise RuntimeError("call reset() before step()")
        completion = Completion.coerce(action)
        if len(completion.text) > self.action_space.max_length:
            raise ValueError(f"completion of {len(completion.text)} characters exceeds "
                             f"max_completion_chars={self.action_space.max_length}")
        verdict = self.verifier(self.problem, completion)
        self._last = (completion.text, verdict)
        info = {"verdict": verdict, "correct": verdict.correct, "problem_id": self.problem.id}
        return self.format_prompt(self.problem), float(verdict.reward), True, completion.truncated, info

    def render(self) -> str | None:
        if self.render_mode != "ansi" or self.problem is None:
            return None
        text = f"[{self.problem.id}] {self.format_prompt(self.problem)}"
        if self._last is not None:
            completion, verdict = self._last
            text += f"\n-> {completion!r}\n   reward={verdict.reward:g} correct={verdict.correct}"
            text += f" extracted={verdict.extracted!r}" + (f" error={verdict.error}" if verdict.error else "")
        return text
