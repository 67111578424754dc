"""The `math` verifier: extract the model's final answer and judge it equivalent to the gold answer with
math-verify (fractions, decimals, percentages, sets, intervals, matrices, `x=3` vs `3`, LaTeX vs plain text,
thousands separators, units and degrees). Plain numbers take an exact fast path; everything else runs in a worker
process under a hard deadline, because math-verify's own `signal.alarm` timeouts only work on the main thread
and cannot interrupt C code. Its LaTeX parser runs ANTLR's two-stage strategy (see `two_stage_parsing`)."""

from __future__ import annotations

import contextvars
import functools
import logging
import re
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from typing import Any, ClassVar

from rlvr.types import Completion, Problem, Verdict
from rlvr.verifiers.extract import EXTRACTORS, clean, extract_answer, last_boxed, unclosed_brace
from rlvr.verifiers.registry import register
from rlvr.verifiers.worker import call_with_deadline, in_worker

KILL_GRACE = 1.0  # seconds past the soft deadline before the worker is killed outright
DECIMAL = re.compile(r"[+-]?(?:(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)")
FRACTION = re.compile(r"(-?)(?:\\[dt]?frac(?:\{(-?\d+)\}\{(\d+)\}|(\d)(\d))|(\d+)/(\d+))")
DEGREES = re.compile(r"\^\s*(?:\\circ|\{\s*\\circ\s*\})$")
SPACE_AROUND_OPERATOR = re.compile(r"(?<!\\)\s*([=<>+\-*/])\s*")
SPACE_INSIDE_BRACKETS = re.compile(r"([(\[{])\s+|(?<!\\)\s+([)\]}])")
MAX_FAST_DIGITS = 15  # math-verify compares longer decimals at limited float precision: leave them to it


class SoftTimeout(BaseException):
    """Raised by SIGALRM inside a worker; a BaseException so that math-verify's `except Exception` passes it on."""


@contextmanager
def soft_deadline(seconds: float) -> Iterator[None]:
    """Interrupt Python-level work after `seconds` on the main thread (a no-op elsewhere: the kill still applies)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def fire(signum: int, frame: Any) -> None:
        raise SoftTimeout

    previous = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def plain_value(text: str) -> tuple[Fraction, bool] | None:
    """(exact value, written as a decimal?) of an integer, a decimal (thousands separators allowed) or an integer
    fraction (`\\frac{a}{b}`, `\\dfrac12`, `a/b`), in degrees or not (math-verify drops `^\\circ`); None for
    anything else."""
    if sum(c.isdigit() for c in text) > MAX_FAST_DIGITS:
        return None
    text = DEGREES.sub("", text)
    if DECIMAL.fullmatch(text):
        return Fraction(text.replace(",", "")), "." in text
    match = FRACTION.fullmatch(text)
    if not match:
        return None
    sign, *parts = match.groups()
    num, den = [int(x) for x in parts if x is not None]
    return (Fraction(-num if sign else num, den), False) if den else None


def numbers_equal(gold: str, answer: str, float_rounding: int = 6) -> bool | None:
    """Decide number pairs the way math-verify would, without sympy; None when it cannot be sure."""
    a, b = plain_value(gold), plain_value(answer)
    if a is None or b is None:
        return None
    (x, x_decimal), (y, y_decimal) = a, b
    if x == y:
        return True
    if not x_decimal and not y_decimal:
        return False
    # Rounding both to `float_rounding` places moves each by at most half a unit: farther apart never matches.
    return False if abs(x - y) > Fraction(1, 10**float_rounding) else None


def squeeze(text: str) -> str:
    """The text without spaces around operators and just inside brackets, which never change the meaning (spaces
    after commas can: math-verify reads `1,000` as a number and `1, 000` as a set)."""
    text = SPACE_AROUND_OPERATOR.sub(r"\1", text)
    return SPACE_INSIDE_BRACKETS.sub(lambda m: m.group(1) or m.group(2), text).strip()


def quick_verdict(gold: str, answer: str, float_rounding: int = 6) -> bool | None:
    """The fast path: the same string up to spacing, or a pair of plain numbers; None sends it to math-verify."""
    return True if squeeze(answer) == squeeze(gold) else numbers_equal(gold, answer, float_rounding)


class _QuietTimeoutWarning(logging.Filter):
    """math-verify warns once per process that its signal timeouts are off; ours replace them, so drop it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Timeout is disabled")


_SLL_FIRST = contextvars.ContextVar("rlvr_sll_first", default=False)


def _install_two_stage_parsing() -> bool:
    """Wrap latex2sympy's parser (math-verify's LaTeX front end) so that, where `two_stage_parsing` is active, it
    first parses in ANTLR's SLL prediction mode and only after a syntax error reparses in full LL mode. ANTLR
    guarantees that SLL returns the LL parse tree or a syntax error, so verdicts are unchanged; the grammar's
    ambiguous brackets (intervals, sets, tuples) otherwise send every parse into full-context prediction, ~10x
    slower. Elsewhere (other callers of math-verify) the parser is untouched. False if the internals differ."""
    try:
        from antlr4.atn.PredictionMode import PredictionMode
        from latex2sympy2_extended.latex2sympy2 import _Latex2Sympy
    except ImportError:
        return False
    if getattr(_Latex2Sympy, "_rlvr_two_stage", False):
        return True
    if not (callable(getattr(_Latex2Sympy, "create_parser", None)) and callable(getattr(_Latex2Sympy, "parse", None))):
        return False
    create_parser, parse = _Latex2Sympy.create_parser, _Latex2Sympy.parse

    @functools.wraps(create_parser)
    def create_sll_parser(self: Any, latex: str) -> Any:
        parser = create_parser(self, latex)
        if _SLL_FIRST.get():
            parser._interp.predictionMode = PredictionMode.SLL
        return parser

    @functools.wraps(parse)
    def parse_two_stage(self: Any, latex: str) -> Any:
        if not _SLL_FIRST.get():
            return parse(self, latex)
        try:
            return parse(self, latex)
        except Exception:  # a syntax error under SLL may be SLL's own: the full LL parse decides
            token = _SLL_FIRST.set(False)
            try:
                return parse(self, latex)
            finally:
                _SLL_FIRST.reset(token)

    _Latex2Sympy.create_parser, _Latex2Sympy.parse = create_sll_parser, parse_two_stage
    _Latex2Sympy._rlvr_two_stage = True
    return True


@contextmanager
def two_stage_parsing(enabled: bool = True) -> Iterator[None]:
    """Within this block (this thread or task only), math-verify's LaTeX parsing runs SLL first, LL on error."""
    token = _SLL_FIRST.set(enabled and _install_two_stage_parsing())
    try:
        yield
    finally:
        _SLL_FIRST.reset(token)


@lru_cache(maxsize=1)
def _math_verify() -> Any:
    import math_verify

    for name in ("math_verify.parser", "math_verify.grader"):
        logging.getLogger(name).addFilter(_QuietTimeoutWarning())
    return math_verify


@lru_cache(maxsize=8192)
def parse_answer(answer: str) -> list:
    """math-verify's parse of one bare answer (as if boxed), cached: gold answers repeat across a whole run."""
    return _math_verify().parse("\\boxed{" + answer + "}", parsing_timeout=None)


@lru_cache(maxsize=8192)
def equivalent(gold: str, answer: str, float_rounding: int, numeric_precision: int, strict: bool) -> bool:
    return _math_verify().verify(parse_answer(gold), parse_answer(answer), float_rounding=float_rounding,
                                 numeric_precision=numeric_precision, strict=strict, timeout_seconds=None)


@dataclass(frozen=True)
class Judge:
    """The heavy comparison, run where a parent can kill it: (correct, error or None)."""

    timeout: float
    float_rounding: int
    numeric_precision: int
    strict: bool
    two_stage: bool = True

    def __call__(self, gold: str, answer: str) -> tuple[bool, str | None]:
        try:
            with soft_deadline(self.timeout), two_stage_parsing(self.two_stage):
                if equivalent(gold, answer, self.float_rounding, self.numeric_precision, self.strict):
                    return True, None
                if not parse_answer(gold):
                    return False, f"parse error: gold answer {gold[:80]!r} did not parse"
                parsed = parse_answer(answer)
        except SoftTimeout:
            return False, f"timeout: no verdict within the {self.timeout:g} s deadline"
        if not any(not isinstance(p, str) for p in parsed):
            return False, "parse error: the answer is not a math expression math-verify can read"
        return False, "not equivalent"


@lru_cache(maxsize=8192)
def gold_answer(gold: str) -> str:
    """The gold answer without wrapping: the content of its last box if it has one, else the cleaned string."""
    return clean(last_boxed(gold) or gold)


@register("math")
@dataclass
class MathVerifier:
    """Reward 1.0 when the extracted answer is equivalent to `Problem.answer`, else 0.0 with the reason ('no answer
    found', 'not equivalent', 'parse error: ...', 'timeout: ...'). `extract` is the order in which extractors are
    tried (boxed, gsm8k, answer_is, last_number); `timeout` is the per-answer deadline in seconds (a process that
    ignores it is killed a second later); `fast_path` decides strings equal up to spacing and plain numbers without
    sympy, with math-verify's verdicts (tested); `two_stage` parses LaTeX SLL-first (same verdicts, faster)."""

    extract: tuple[str, ...] = ("boxed", "gsm8k", "answer_is", "last_number")
    timeout: float = 5.0
    max_answer_chars: int = 1000
    float_rounding: int = 6
    numeric_precision: int = 15
    strict: bool = True
    fast_path: bool = True
    two_stage: bool = True
    name: ClassVar[str] = "math"

    def __post_init__(self) -> None:
        self.extract = (self.extract,) if isinstance(self.extract, str) else tuple(self.extract)
        unknown = [e for e in self.extract if e not in EXTRACTORS]
        if unknown or not self.extract:
            raise ValueError(f"math verifier: unknown extractor(s) {unknown or self.extract}; "
                             f"choose from {', '.join(EXTRACTORS)}")
        if self.timeout <= 0:
            raise ValueError(f"math verifier: timeout must be > 0 seconds, got {self.timeout}")

    def __call__(self, problem: Problem, completion: Completion | str) -> Verdict:
        if problem.answer is None:
            raise ValueError(f"problem {problem.id!r} has no gold answer; the math verifier needs Problem.answer")
        text = Completion.coerce(completion).text
        answer = extract_answer(text, self.extract)
        if answer is None:
            cut = unclosed_brace(text)
            return Verdict(0.0, False, error="no answer found" if cut is None else
                           f"no answer found: the completion ends inside the '{{' opened at character {cut}")
        if len(answer) > self.max_answer_chars:
            return Verdict(0.0, False, extracted=answer[:self.max_answer_chars] + "...",
                           error=f"parse error: answer has {len(answer)} characters (limit {self.max_answer_chars})")
        gold = gold_answer(str(problem.answer))
        correct = quick_verdict(gold, answer, self.float_rounding) if self.fast_path else None
        if correct is not None:
            return Verdict(float(correct), correct, extracted=answer, error=None if correct else "not equivalent")
        judge = Judge(self.timeout, self.float_rounding, self.numeric_precision, self.strict, self.two_stage)
        if in_worker():
            correct, error = judge(gold, answer)
        else:
            ok, value = call_with_deadline(judge, (gold, answer), self.timeout + KILL_GRACE)
            correct, error = value if ok else (False, value)
        return Verdict(float(correct), correct, extracted=answer, error=error)
