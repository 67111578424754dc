"""The `code` verifier: extract a Python program from a completion and run it in a persistent sandbox against
the problem's tests, given in `Problem.tests` in one of three forms (see docs/sandbox.md):

- `{"kind": "humaneval", "prompt": ..., "test": <defines check(candidate)>, "entry_point": name}`
- `{"kind": "asserts", "asserts": [str, ...], "setup": optional trusted code run before them}`
- `{"kind": "io", "cases": [{"stdin": str, "stdout": str}, ...]}`
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from rlvr.types import Completion, Problem, Verdict
from rlvr.verifiers.base import cpu_count
from rlvr.verifiers.registry import register
from rlvr.verifiers.sandbox import DEFAULT_LIMITS, resolve_isolation, run

FENCE = re.compile(r"```[ \t]*([\w+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
PYTHON_TAGS = ("python", "py", "python3", "")


@dataclass
class Limits:
    """Resource limits of one verification. Times in seconds; `timeout_s` bounds each test's wall time."""

    timeout_s: float = DEFAULT_LIMITS["timeout_s"]
    cpu_s: int = DEFAULT_LIMITS["cpu_s"]
    memory_mb: int = DEFAULT_LIMITS["memory_mb"]
    max_procs: int = DEFAULT_LIMITS["max_procs"]
    max_file_mb: int = DEFAULT_LIMITS["max_file_mb"]
    max_open_files: int = DEFAULT_LIMITS["max_open_files"]
    max_output_bytes: int = DEFAULT_LIMITS["max_output_bytes"]
    tmpfs_mb: int = DEFAULT_LIMITS["tmpfs_mb"]  # size of the sandbox's /tmp and scratch dir (bwrap)


@dataclass
class CodeVerdict(Verdict):
    """A Verdict that also says how many tests passed and under which isolation they ran."""

    passed: int = 0
    total: int = 0
    isolation: str = ""


def extract_program(text: str, block: Literal["last", "first"] = "last") -> str:
    """The last (or first) fenced Python block of `text`, an unterminated final fence included; else the text."""
    blocks = [body for tag, body in FENCE.findall(text) if tag.lower() in PYTHON_TAGS]
    if not blocks:
        return text
    return blocks[-1] if block == "last" else blocks[0]


def humaneval_programs(prompt: str, code: str, entry_point: str) -> list[str]:
    """Candidate programs for a HumanEval completion, tried in order: a full definition of `entry_point` after
    the prompt (which keeps the prompt's imports and helpers), or a body continuing the prompt, as written and
    re-indented."""
    if re.search(rf"^(async\s+)?def\s+{re.escape(entry_point)}\s*\(", code, re.MULTILINE):
        return [prompt + "\n" + code]
    body = textwrap.indent(textwrap.dedent(code.strip("\n")), "    ")
    return [prompt + code, prompt + body + "\n"]


def build_job(problem: Problem, program: str, stop_on_failure: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split a problem into the sandbox's job (the program: seen by the candidate) and tests (harness only)."""
    spec = problem.tests
    kind = spec.get("kind") if isinstance(spec, dict) else None
    if kind == "humaneval":
        _require(problem, spec, "prompt", "test", "entry_point")
        job = {"kind": "functions",
               "programs": humaneval_programs(spec["prompt"], program, spec["entry_point"])}
        tests = {"setup": spec["prompt"] + "\n" + spec["test"], "tests": [f"check({spec['entry_point']})"],
                 "remote": spec["entry_point"]}
    elif kind == "asserts":
        _require(problem, spec, "asserts")
        job = {"kind": "functions", "programs": [program]}
        tests = {"setup": spec.get("setup") or "", "tests": list(spec["asserts"])}
    elif kind == "io":
        _require(problem, spec, "cases")
        bad = [i for i, c in enumerate(spec["cases"]) if not isinstance(c, dict) or "stdout" not in c]
        if bad:
            raise ValueError(f"problem {problem.id!r}: io cases {bad} need a 'stdout' (and optional 'stdin')")
        job = {"kind": "io", "programs": [program]}
        tests = {"cases": [{"stdin": c.get("stdin", ""), "stdout": c["stdout"]} for c in spec["cases"]]}
    else:
        raise ValueError(f"problem {problem.id!r}: tests must be a dict with kind 'humaneval', 'asserts' or 'io' "
                         f"(see docs/sandbox.md), got {_describe(spec)}")
    tests["stop_on_failure"] = stop_on_failure
    return job, tests


def _require(problem: Problem, spec: dict[str, Any], *keys: str) -> None:
    missing = [k for k in keys if not spec.get(k)]
    if missing:
        raise ValueError(f"problem {problem.id!r}: {spec['kind']} tests need {', '.join(missing)}")


def run_program(program: str, stdin: str = "", limits: Limits | None = None, isolation: str | None = None,
                allow_unisolated: bool = False) -> str:
    """Run untrusted `program` once in the code sandbox (the `code` verifier's isolation and limits) and return
    what it printed, then the exception that ended it, if one did (`ValueError: ...`), or why it was stopped
    (`[timeout]`, `[output limit]`, `[crashed (SIGSEGV)]`)."""
    level = resolve_isolation(isolation, allow_unisolated)
    report = run({"kind": "io", "programs": [program], "capture": True},
                 {"cases": [{"stdin": stdin}], "capture": True}, asdict(limits or Limits()), level)
    if report.get("status") != "ok":
        return f"[{report.get('cause')}: {report.get('detail', '')}]"
    [case] = report["tests"]
    return case["stdout"] + (f"[{case['cause']}]" if not case["ok"] else "")


def _describe(spec: Any) -> str:
    return f"kind {spec.get('kind')!r}" if isinstance(spec, dict) else f"a {type(spec).__name__}"


@register("code")
@dataclass
class CodeVerifier:
    """Runs the completion's program against the problem's tests in an isolated sandbox. Reward 1.0 when every
    test passes (or the fraction that passed, with `partial=True`); the verdict names the first failure."""

    limits: Limits = field(default_factory=Limits)
    partial: bool = False
    block: Literal["last", "first"] = "last"
    isolation: str | None = None  # None: the strongest available ("bwrap", then "unshare")
    allow_unisolated: bool = False
    python: str | None = None  # interpreter inside the sandbox; default: this one
    scratch_root: str | None = None  # where scratch dirs go when bwrap's tmpfs is not used
    name: str = "code"

    def __call__(self, problem: Problem, completion: Completion | str) -> CodeVerdict:
        level = resolve_isolation(self.isolation, self.allow_unisolated, self.python)
        program = extract_program(Completion.coerce(completion).text, self.block)
        job, tests = build_job(problem, program, stop_on_failure=not self.partial)
        report = run(job, tests, asdict(self.limits), level, self.scratch_root, self.python)
        total = len(tests.get("tests", tests.get("cases", ())))
        if report.get("status") != "ok":
            return CodeVerdict(reward=0.0, correct=False, extracted=program, total=total, isolation=level,
                               error=f"{report.get('cause')}: {report.get('detail', '')}".rstrip(": "))
        results = report["tests"]
        passed = sum(r["ok"] for r in results)
        first = next((i for i, r in enumerate(results) if not r["ok"]), None)
        error = None
        if first is not None:
            failed = results[first]
            error = f"test {first}: {failed['cause']}" + (f": {failed['detail']}" if failed.get("detail") else "")
        reward = passed / total if self.partial else float(passed == total)
        return CodeVerdict(reward=reward, correct=passed == total, extracted=program, error=error,
                           passed=passed, total=total, isolation=level)

    def batch(self, items: Sequence[tuple[Problem, Completion | str]], workers: int | None = None) -> list[CodeVerdict]:
        """Verdicts for many (problem, completion) pairs in input order, `workers` at a time (default: one per
        core). Threads suffice: each one's job runs in a persistent sandbox of its own, outside this process."""
        workers = workers or cpu_count()
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        with ThreadPoolExecutor(workers) as pool:
            return list(pool.map(lambda item: self(*item), items))
