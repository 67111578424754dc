"""Factories of the built-in envs, registered with Gymnasium under the `rlvr` namespace in `rlvr.envs`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rlvr.envs.multiturn import CodeFeedback, GuessNumber, HiddenNumbers, ToolEnv
from rlvr.envs.prompt_env import PromptEnv
from rlvr.envs.tasks.arithmetic import Arithmetic
from rlvr.envs.tasks.countdown import Countdown
from rlvr.envs.tasks.files import MATH_FIELDS, CodeFile, MathFile
from rlvr.safe_eval import evaluate
from rlvr.tools import ToolCall
from rlvr.types import Problem

MATH_TEMPLATE = "{prompt}\nPlease reason step by step, and put your final answer within \\boxed{}."
CODE_TEMPLATE = ("Complete the following Python function. Reply with the full function in a ```python code "
                 "block.\n\n{prompt}")

# Split off the keywords a task source takes; the rest configure the PromptEnv.
_ENV_KEYS = ("verifier", "template", "system_prompt", "max_prompt_chars", "max_completion_chars", "render_mode")


def _split(kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    env_kw = {k: kwargs.pop(k) for k in _ENV_KEYS if k in kwargs}
    return kwargs, env_kw


def arithmetic(**kwargs: Any) -> PromptEnv:
    """Integer arithmetic, `level` 1..7 or a list of levels (mixed); the prompt is the bare expression and `=`."""
    source_kw, env_kw = _split(kwargs)
    return PromptEnv(Arithmetic(**source_kw), **{"template": "{prompt} =", **env_kw})


def countdown(**kwargs: Any) -> PromptEnv:
    """Reach a target with the given numbers; the answer goes in <answer></answer> tags."""
    source_kw, env_kw = _split(kwargs)
    return PromptEnv(Countdown(**source_kw), **env_kw)


def gsm8k(path: str | Path | None = None, **kwargs: Any) -> PromptEnv:
    """GSM8K rows (`question`, `answer` ending in `#### 42`) from `path`."""
    source_kw, env_kw = _split(kwargs)
    source = MathFile(path, name="gsm8k", **source_kw)
    return PromptEnv(source, **{"template": MATH_TEMPLATE, **env_kw})


def math(path: str | Path | None = None, **kwargs: Any) -> PromptEnv:
    """MATH rows (`problem`, `solution` with a final `\\boxed{}`) from `path`."""
    source_kw, env_kw = _split(kwargs)
    source = MathFile(path, name="math", **{"fields": MATH_FIELDS, **source_kw})
    return PromptEnv(source, **{"template": MATH_TEMPLATE, **env_kw})


def humaneval(path: str | Path | None = None, **kwargs: Any) -> PromptEnv:
    """HumanEval rows (`task_id`, `prompt`, `entry_point`, `test`) from `path`, scored in the code sandbox."""
    source_kw, env_kw = _split(kwargs)
    source = CodeFile(path, name="humaneval", **source_kw)
    return PromptEnv(source, **{"template": CODE_TEMPLATE, "max_completion_chars": 65536, **env_kw})


def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression exactly.

    Args:
        expression: integers with + - * / and parentheses, e.g. "(17 * 24) - 5"
    """
    value = evaluate(expression)  # a ValueError names what is not arithmetic; it goes back to the model
    return str(value.numerator if value.denominator == 1 else value)


def calculator_solution(problem: Problem) -> list[ToolCall]:
    """The call that solves an arithmetic problem: the calculator on its expression."""
    return [ToolCall("calculator", {"expression": problem.meta["expression"]})]


CALCULATOR_TEMPLATE = "{prompt} = ? You may call the calculator tool."


def calculator_env(max_turns: int = 3, tool_timeout: float = 5.0, parser: str = "hermes", **kwargs: Any) -> ToolEnv:
    """Products of a three-digit and a two-digit number, and two-product sums (Arithmetic level 7), with a
    `calculator` tool; the final answer is scored by the `math` verifier."""
    render_mode = kwargs.pop("render_mode", None)
    source_kw, env_kw = _split({"level": 7, **kwargs})
    task = PromptEnv(Arithmetic(**source_kw), **{"template": CALCULATOR_TEMPLATE, **env_kw})
    return ToolEnv(task, [calculator], max_turns=max_turns, tool_timeout=tool_timeout, parser=parser,
                   solution=calculator_solution, render_mode=render_mode)


def guess_number(high: int = 100, max_turns: int = 7, **kwargs: Any) -> GuessNumber:
    """Find a hidden integer in [1, high] from 'higher'/'lower' replies within `max_turns` guesses."""
    render_mode = kwargs.pop("render_mode", None)
    source_kw, env_kw = _split(kwargs)
    task = PromptEnv(HiddenNumbers(high, max_turns, **source_kw), **env_kw)
    return GuessNumber(task, max_turns=max_turns, render_mode=render_mode)


def code_feedback(path: str | Path | None = None, max_turns: int = 3, **kwargs: Any) -> CodeFeedback:
    """HumanEval rows from `path`, up to `max_turns` attempts, each failure answered with the first failing
    test's error from the sandbox."""
    render_mode = kwargs.pop("render_mode", None)
    return CodeFeedback(humaneval(path, **kwargs), max_turns=max_turns, render_mode=render_mode)


def reasoning_gym(task: str, **kwargs: Any) -> PromptEnv:
    """A reasoning-gym data set, `task=NAME` with its config fields (or curriculum `levels=`), scored by its own
    `score_answer` on the last <answer></answer>; `rlvr list envs` lists the tasks."""
    from rlvr.envs.tasks.reasoning_gym import ReasoningGym, require_reasoning_gym

    source_kw, env_kw = _split(kwargs)
    system = require_reasoning_gym().utils.SYSTEM_PROMPTS["default"]  # asks for <answer></answer>
    # ARC-style grids make prompts of tens of thousands of characters
    return PromptEnv(ReasoningGym(task, **source_kw),
                     **{"system_prompt": system, "max_prompt_chars": 1 << 17, **env_kw})


BUILTIN_ENVS = {
    "rlvr/Arithmetic-v0": arithmetic,
    "rlvr/Countdown-v0": countdown,
    "rlvr/GSM8K-v0": gsm8k,
    "rlvr/MATH-v0": math,
    "rlvr/HumanEval-v0": humaneval,
    "rlvr/Calculator-v0": calculator_env,
    "rlvr/GuessNumber-v0": guess_number,
    "rlvr/CodeFeedback-v0": code_feedback,
}
# registered only where the package they wrap is installed (its extra)
OPTIONAL_ENVS = {"rlvr/ReasoningGym-v0": (reasoning_gym, "reasoning_gym")}

# What `rlvr train --env ID` trains the built-in tiny character model with (docs/multiturn.md, "Calculator"): the
# compact pythonic call format and a bare prompt keep an episode near 60 characters; the warm-start demonstrates
# the calculator in a fifth of its episodes, so RL starts from a policy that can use it but rarely does; forward
# passes pack rows of like length (short direct answers, long tool episodes).
TINY_DEFAULTS = {
    "rlvr/Calculator-v0": {"env_kwargs": {"parser": "pythonic", "template": "{prompt} ="}, "max_new_tokens": 48,
                           "warmstart_steps": 800, "warmstart_tool_prob": 0.2, "micro_batch_tokens": 1024,
                           "steps": 20, "eval_k": 1, "lr": 1e-3},
}
