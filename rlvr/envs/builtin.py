"""Factories of the built-in envs, registered with Gymnasium under the `rlvr` namespace in `rlvr.envs`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rlvr.envs.prompt_env import PromptEnv
from rlvr.envs.tasks.arithmetic import Arithmetic
from rlvr.envs.tasks.countdown import Countdown
from rlvr.envs.tasks.files import MATH_FIELDS, CodeFile, MathFile

MATH_TEMPLATE = "{prompt}\nPlease reason step by step, and put your final answer within \\boxed{}."
CODE_TEMPLATE = ("Complete the following Python function. Reply with the full function in a ```python code "
                 "block.\n\n{prompt}")

# Split off the keywords a task source takes; the rest configure the PromptEnv.
_ENV_KEYS = ("verifier", "template", "system_prompt", "max_prompt_chars", "max_completion_chars", "render_mode")


def _split(kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    env_kw = {k: kwargs.pop(k) for k in _ENV_KEYS if k in kwargs}
    return kwargs, env_kw


def arithmetic(**kwargs: Any) -> PromptEnv:
    """Integer arithmetic, `level` 1..5; the prompt is the bare expression followed by `=`."""
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


BUILTIN_ENVS = {
    "rlvr/Arithmetic-v0": arithmetic,
    "rlvr/Countdown-v0": countdown,
    "rlvr/GSM8K-v0": gsm8k,
    "rlvr/MATH-v0": math,
    "rlvr/HumanEval-v0": humaneval,
}
