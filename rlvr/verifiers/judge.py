"""The `judge` verifier: a language model decides whether a completion answers the problem, where no rule can. It
asks an OpenAI-compatible chat-completions endpoint (`url`: a vLLM or TGI server, a hosted API) or an rlvr engine
over a local model (`engine="hf"` or `"vllm"`, greedy), with a prompt template, and parses its verdict from the
reply. A timeout, a transport error or a reply without a verdict is an error verdict that says which, never a
silent reward."""

from __future__ import annotations

import functools
import json
import os
import re
import socket
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from rlvr.types import Completion, Problem, Verdict
from rlvr.verifiers.base import Item
from rlvr.verifiers.registry import register

TEMPLATE = """You are grading an answer to a problem.

Problem:
{question}

Reference answer (may be empty):
{answer}

Answer to grade:
{completion}

Is the answer to grade correct? Think briefly, then end with exactly one line: VERDICT: CORRECT or VERDICT: INCORRECT"""
VERDICT = r"VERDICT:\s*(CORRECT|INCORRECT)\b"


@functools.lru_cache(maxsize=2)
def local_engine(engine: str, model: str, device: str) -> Any:
    """An rlvr engine over a local model directory, once per process (a verifier worker builds its own). A model
    with a chat template is asked through it."""
    from rlvr.models import load_policy
    from rlvr.rollout import make_engine

    policy, tokenizer = load_policy(model, device=device)
    chat = bool(getattr(tokenizer, "chat_template", None))
    return make_engine(engine, policy, tokenizer, model=model, save_dir=None, add_special_tokens=not chat)


def chat_prompt(engine: Any, prompt: str) -> str:
    """`prompt` as the judge's chat template renders a user turn, when it has one."""
    tokenizer = engine.tokenizer
    if not getattr(tokenizer, "chat_template", None):
        return prompt
    return tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                         add_generation_prompt=True)


@register("judge")
@dataclass
class JudgeVerifier:
    """Reward 1 when the judge's last match of `verdict` reads `correct_label`, else 0. The judge is `url` (an
    OpenAI-compatible endpoint's base, e.g. http://localhost:8000/v1, with `model` and the API key in the
    environment variable `api_key_env`, if set), or `engine` ("hf", "vllm") over the local directory `model`.
    `template` takes {question}, {answer} (the gold answer, or empty) and {completion}."""

    url: str = ""
    model: str = ""
    engine: str = "http"
    template: str = TEMPLATE
    verdict: str = VERDICT
    correct_label: str = "CORRECT"
    max_tokens: int = 512
    temperature: float = 0.0
    timeout: float = 60.0
    api_key_env: str = "OPENAI_API_KEY"
    device: str = "cpu"
    name: ClassVar[str] = "judge"

    def __post_init__(self) -> None:
        if self.engine not in ("http", "hf", "vllm"):
            raise ValueError(f"judge: engine must be 'http', 'hf' or 'vllm', got {self.engine!r}")
        if self.engine == "http" and not self.url:
            raise ValueError("judge: engine 'http' needs url= (an OpenAI-compatible endpoint, e.g. "
                             "http://localhost:8000/v1)")
        if not self.model:
            raise ValueError("judge: model= names the judge (the endpoint's model id, or a local directory)")
        for field in ("{question}", "{completion}"):
            if field not in self.template:
                raise ValueError(f"judge: template must contain {field}")
        re.compile(self.verdict)
        if self.timeout <= 0:
            raise ValueError(f"judge: timeout must be > 0 seconds, got {self.timeout}")

    def prompt(self, problem: Problem, completion: Completion) -> str:
        question = problem.prompt if isinstance(problem.prompt, str) else problem.prompt[-1]["content"]
        fields = {"question": question, "answer": problem.answer or "", "completion": completion.text}
        return re.sub(r"\{(question|answer|completion)\}", lambda m: fields[m.group(1)], self.template)

    def parse(self, reply: str) -> Verdict:
        """The verdict in the judge's reply (its last match), or an error verdict quoting the reply."""
        found = re.findall(self.verdict, reply)
        if not found:
            return Verdict(0.0, False, error=f"unparsable judgement: no {self.verdict!r} in {reply[-200:]!r}")
        label = found[-1] if isinstance(found[-1], str) else found[-1][0]
        correct = label.strip().upper() == self.correct_label.upper()
        return Verdict(float(correct), correct, extracted=label, error=None if correct else "judged incorrect")

    def __call__(self, problem: Problem, completion: Completion | str) -> Verdict:
        return self.batch([(problem, Completion.coerce(completion))])[0]

    def batch(self, items: Sequence[Item]) -> list[Verdict]:
        prompts = [self.prompt(p, Completion.coerce(c)) for p, c in items]
        if self.engine == "http":
            return [self.ask(prompt) for prompt in prompts]
        from rlvr.sampling import Sampling

        engine = local_engine(self.engine, self.model, self.device)
        groups = engine.generate([chat_prompt(engine, p) for p in prompts], 1,
                                 Sampling(max_new_tokens=self.max_tokens, temperature=self.temperature))
        return [self.parse(group[0].text) for group in groups]

    def ask(self, prompt: str) -> Verdict:
        """One chat-completions request; its failures as named error verdicts."""
        body = {"model": self.model, "messages": [{"role": "user", "content": prompt}],
                "max_tokens": self.max_tokens, "temperature": self.temperature}
        headers = {"Content-Type": "application/json"}
        if os.environ.get(self.api_key_env):
            headers["Authorization"] = f"Bearer {os.environ[self.api_key_env]}"
        request = urllib.request.Request(self.url.rstrip("/") + "/chat/completions", json.dumps(body).encode(),
                                         headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                reply = json.loads(response.read())["choices"][0]["message"]["content"]
        except (TimeoutError, socket.timeout):
            return Verdict(0.0, False, error=f"timeout: the judge gave no reply within {self.timeout:g} s")
        except urllib.error.HTTPError as exc:
            return Verdict(0.0, False, error=f"judge error: HTTP {exc.code} {exc.reason}")
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, (TimeoutError, socket.timeout)):
                return Verdict(0.0, False, error=f"timeout: the judge gave no reply within {self.timeout:g} s")
            return Verdict(0.0, False, error=f"judge error: cannot reach {self.url} ({reason})")
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            return Verdict(0.0, False, error=f"unparsable judgement: the endpoint's reply is not a chat completion "
                                              f"({type(exc).__name__})")
        if not isinstance(reply, str):
            return Verdict(0.0, False, error="unparsable judgement: the reply has no text content")
        return self.parse(reply)
