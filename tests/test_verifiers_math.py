"""The math verifier: a labelled table of equivalences across answer formats, answer extraction, the plain-number
fast path against math-verify itself, and hard deadlines on pathological answers from a worker thread."""

from __future__ import annotations

import pickle
import random
import threading
import time

import pytest

from rlvr.types import Completion, Problem
from rlvr.verifiers import VerifierPool, call_with_deadline
from rlvr.verifiers.extract import answer_is, clean, extract_answer, gsm8k, last_boxed, last_number, unclosed_brace
from rlvr.verifiers.math_verifier import MathVerifier, numbers_equal, quick_verdict, squeeze


def boxed(x: str) -> str:
    return f"Let me work through it step by step.\nSo the result is $\\boxed{{{x}}}$."


# (category, gold, completion, expected correct)
TABLE = [
    # integers
    ("integer", "72", boxed("72"), True),
    ("integer", "72", boxed("73"), False),
    ("integer", "-5", boxed("-5"), True),
    ("integer", "-5", boxed("5"), False),
    ("integer", "0", boxed("0"), True),
    ("integer", "1000000", boxed("1000000"), True),
    ("integer", "007", boxed("7"), True),
    ("integer", "12", boxed("+12"), True),
    # decimals
    ("decimal", "0.5", boxed("0.50"), True),
    ("decimal", "0.5", boxed(".5"), True),
    ("decimal", "72", boxed("72.0"), True),
    ("decimal", "3.14", boxed("3.15"), False),
    ("decimal", "2.5", boxed("2.05"), False),
    ("decimal", "-0.25", boxed("-0.25"), True),
    ("decimal", "1.333333", boxed("1.3333333"), True),
    ("decimal", "0.1", boxed("0.01"), False),
    # fractions
    ("fraction", "\\frac{1}{2}", boxed("0.5"), True),
    ("fraction", "\\frac{1}{2}", boxed("1/2"), True),
    ("fraction", "\\frac12", boxed("\\dfrac{1}{2}"), True),
    ("fraction", "\\frac{2}{4}", boxed("\\frac{1}{2}"), True),
    ("fraction", "\\frac{3}{4}", boxed("0.75"), True),
    ("fraction", "\\frac{1}{3}", boxed("0.333333"), True),
    ("fraction", "\\frac{1}{3}", boxed("0.33"), False),
    ("fraction", "\\frac{1}{2}", boxed("\\frac{1}{3}"), False),
    ("fraction", "\\frac{7}{2}", boxed("3\\frac{1}{2}"), True),
    ("fraction", "-\\frac{2}{3}", boxed("\\frac{-2}{3}"), True),
    ("fraction", "\\frac{2}{3}", boxed("-\\frac{2}{3}"), False),
    ("fraction", "\\tfrac{5}{8}", boxed("5/8"), True),
    # percentages
    ("percent", "50\\%", boxed("50\\%"), True),
    ("percent", "50\\%", boxed("50"), True),
    ("percent", "50\\%", boxed("0.5"), True),
    ("percent", "25", boxed("25\\%"), True),
    ("percent", "50\\%", boxed("40\\%"), False),
    ("percent", "12.5\\%", boxed("12.5\\%"), True),
    ("percent", "50\\%", boxed("5\\%"), False),
    # sets and tuples
    ("set", "\\{1, 2\\}", boxed("\\{2, 1\\}"), True),
    ("set", "\\{1, 2, 3\\}", boxed("\\{1, 2\\}"), False),
    ("set", "1, 2", boxed("2, 1"), True),
    ("set", "\\{-1, 1\\}", boxed("\\{1, -1\\}"), True),
    ("set", "\\{1, 2\\}", boxed("\\{1, 3\\}"), False),
    ("set", "(1, 2)", boxed("(1, 2)"), True),
    ("set", "(1, 2)", boxed("(2, 1)"), False),
    ("set", "\\{\\frac{1}{2}, 3\\}", boxed("\\{3, 0.5\\}"), True),
    # intervals
    ("interval", "(1, 2]", boxed("(1, 2]"), True),
    ("interval", "(1, 2]", boxed("[1, 2]"), False),
    ("interval", "[0, \\infty)", boxed("[0, \\infty)"), True),
    ("interval", "(-\\infty, 3)", boxed("(-\\infty, 3]"), False),
    ("interval", "(-\\infty, 0) \\cup (1, \\infty)", boxed("(-\\infty, 0) \\cup (1, \\infty)"), True),
    ("interval", "[2, 5]", boxed("[2,5]"), True),
    ("interval", "[2, 5]", boxed("[2, 6]"), False),
    # matrices
    ("matrix", r"\begin{pmatrix} 1 & 2 \\ 3 & 4 \end{pmatrix}", boxed(r"\begin{pmatrix}1&2\\3&4\end{pmatrix}"), True),
    ("matrix", r"\begin{pmatrix} 1 & 2 \\ 3 & 4 \end{pmatrix}", boxed(r"\begin{pmatrix}1&2\\3&5\end{pmatrix}"), False),
    ("matrix", r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}", boxed(r"\begin{bmatrix} 1 \\ 2 \end{bmatrix}"), True),
    ("matrix", r"\begin{pmatrix} 0.5 \\ 2 \end{pmatrix}", boxed(r"\begin{pmatrix} \frac{1}{2} \\ 2 \end{pmatrix}"), True),
    ("matrix", r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}", boxed(r"\begin{pmatrix} 2 \\ 1 \end{pmatrix}"), False),
    # equations and relations
    ("equation", "3", boxed("x = 3"), True),
    ("equation", "x = 3", boxed("3"), True),
    ("equation", "x = 3", boxed("x = 4"), False),
    ("equation", "3", boxed("x = 4"), False),
    ("equation", "y = 2x + 1", boxed("y = 1 + 2x"), True),
    ("equation", "y = 2x + 1", boxed("y = 2x - 1"), False),
    ("equation", "x > 2", boxed("2 < x"), True),
    ("equation", "x \\geq 2", boxed("x > 2"), False),
    # LaTeX vs plain text expressions
    ("expression", "\\sqrt{2}", boxed("\\sqrt2"), True),
    ("expression", "\\frac{\\sqrt{2}}{2}", boxed("\\sqrt{2}/2"), True),
    ("expression", "\\frac{\\sqrt{2}}{2}", boxed("\\frac{1}{\\sqrt{2}}"), True),
    ("expression", "2\\sqrt{3}", boxed("\\sqrt{12}"), True),
    ("expression", "2\\sqrt{3}", boxed("3\\sqrt{2}"), False),
    ("expression", "\\pi", boxed("\\pi"), True),
    ("expression", "2\\pi", boxed("\\pi"), False),
    ("expression", "x^2 + 2x + 1", boxed("(x+1)^2"), True),
    ("expression", "x^2 + 2x + 1", boxed("(x-1)^2"), False),
    ("expression", "\\frac{\\pi}{4}", boxed("\\pi/4"), True),
    ("expression", "e^{2}", boxed("e^2"), True),
    ("expression", "2^{10}", boxed("1024"), True),
    ("expression", "\\sqrt{16}", boxed("4"), True),
    ("expression", "\\log_2 8", boxed("3"), True),
    ("expression", "3 + 2i", boxed("2i + 3"), True),
    ("expression", "\\text{(B)}", boxed("\\text{(B)}"), True),
    ("expression", "\\text{(B)}", boxed("\\text{(C)}"), False),
    # thousands separators
    ("thousands", "1000", boxed("1,000"), True),
    ("thousands", "1,000", boxed("1000"), True),
    ("thousands", "1234567", boxed("1,234,567"), True),
    ("thousands", "1000", boxed("1{,}000"), True),
    ("thousands", "1000", boxed("1,001"), False),
    ("thousands", "12,345", "The total is 12,345 apples.", True),
    # units and degrees
    ("units", "10", boxed("10 \\text{ cm}"), True),
    ("units", "10", boxed("10\\text{ meters}"), True),
    ("units", "10", boxed("11 \\text{ cm}"), False),
    ("units", "30", boxed("30^\\circ"), True),
    ("units", "30^\\circ", boxed("30"), True),
    ("units", "30^\\circ", boxed("60^\\circ"), False),
    ("units", "18", boxed("\\$18"), True),
    ("units", "18", boxed("\\$19"), False),
    # where the answer is found
    ("extraction", "42", "#### 42", True),
    ("extraction", "42", "Adding them up gives 40 + 2.\n#### 42", True),
    ("extraction", "42", "#### 41", False),
    ("extraction", "42", "So the answer is 42.", True),
    ("extraction", "42", "The final answer is: 42", True),
    ("extraction", "42", "The answer is 24.", False),
    ("extraction", "42", "We get 6 * 7 which equals 42", True),
    ("extraction", "42", "We get 42 and then subtract 2 to get 40", False),
    ("extraction", "\\frac{1}{2}", "first \\boxed{3}, on second thought \\boxed{\\frac{1}{2}}", True),
    ("extraction", "3", "first \\boxed{3}, on second thought \\boxed{\\frac{1}{2}}", False),
    ("extraction", "5", "The answer is \\fbox{5}", True),
    ("extraction", "5", "\\boxed 5", True),
    ("extraction", "\\frac{1}{2}", "The answer is $\\frac{1}{2}$.", True),
    ("extraction", "7", "\\boxed{7} and then a truncated \\boxed{\\frac{1", True),
    ("extraction", "7", "**The answer is 7.**", True),
    ("extraction", "\\boxed{7}", "It is 7.", True),
    ("extraction", "$7$", boxed("7"), True),
]


@pytest.fixture(scope="module")
def verifier() -> MathVerifier:
    return MathVerifier()


@pytest.fixture(scope="module", params=[True, False], ids=["fast-path", "math-verify-only"])
def table_verifier(request) -> MathVerifier:
    return MathVerifier(fast_path=request.param)


def test_table_has_100_cases_of_both_labels_per_category():
    assert len(TABLE) >= 100
    categories = {c for c, *_ in TABLE}
    for category in categories:
        labels = {want for c, _, _, want in TABLE if c == category}
        assert labels == {True, False}, category


@pytest.mark.parametrize("category,gold,text,want", TABLE, ids=[f"{c}-{i}" for i, (c, *_) in enumerate(TABLE)])
def test_math_equivalence_table(table_verifier, category, gold, text, want):
    v = table_verifier(Problem("p", "q", answer=gold), Completion(text))
    assert v.correct is want, (gold, text, v)
    assert v.reward == float(want)
    assert (v.error is None) is want
    if not want:
        assert v.error in ("not equivalent", "no answer found") or v.error.startswith("parse error"), v.error


def test_table_through_pool_matches_direct_calls(verifier):
    items = [(Problem(f"p{i}", "q", answer=g), Completion(t)) for i, (_, g, t, _) in enumerate(TABLE)]
    with VerifierPool(num_workers=2, timeout=20) as pool:
        verdicts = pool.map(verifier, items)
    assert [v.correct for v in verdicts] == [want for *_, want in TABLE]


def test_extractors():
    assert last_boxed("a \\boxed{1} b \\boxed{\\frac{2}{3}} c") == "\\frac{2}{3}"
    assert last_boxed("\\boxed{x^{2}} and \\boxed{unclosed") == "x^{2}"
    assert last_boxed("\\fbox{9}") == "9" and last_boxed("no box") is None
    assert last_boxed("\\boxed{" + "{" * 3000 + "}" * 3000 + "}") == "{" * 3000 + "}" * 3000
    assert gsm8k("work\n#### 1,234\n") == "1,234" and gsm8k("no hashes") is None
    assert answer_is("Thus the answer is 3.5. Done") == "3.5"
    assert answer_is("Answer: \\boxed{12}") == "12"
    assert last_number("it costs $1,234.50 or 3/4 of it") == "3/4"
    assert last_number("1,2345") == "2345" and last_number("none") is None
    assert clean(" $**42.**$ ") == "42"


@pytest.mark.parametrize("text", [
    "\\boxed{\\frac{5}{",  # a truncated completion's box: its 5 is not the answer
    "so x = \\frac{5}{",  # the same without a box: no fall-back to the last number
    "#### \\boxed{5",  # nor to the GSM8K line holding the broken box
    "The answer is \\boxed{5",  # nor to "the answer is"
    "the sum is 5 and so \\frac{5}{",  # nor to a number before the broken group
])
def test_a_completion_cut_inside_an_open_brace_has_no_answer(verifier, text):
    """Gold 5: a completion that ends inside an unclosed `{` was cut mid-answer; no extraction rule may read a
    number out of (or before) the broken group. (A closed box before it still counts: the table's
    `\\boxed{7} and then a truncated \\boxed{\\frac{1`.)"""
    verdict = verifier(Problem("p", "q", answer="5"), text)
    assert not verdict.correct and verdict.extracted is None
    assert verdict.error.startswith("no answer found: the completion ends inside the '{' opened at character")
    assert extract_answer(text, ["boxed", "gsm8k", "answer_is", "last_number"]) is None
    assert unclosed_brace("\\boxed{\\frac{5}{") == 6  # the box's own brace: the outermost still open


def test_escaped_and_balanced_braces_are_not_a_cut():
    p = Problem("p", "q", answer="5")
    for text in ("\\{1, 2\\} has \\boxed{5}", "f(x) = \\frac{x}{2} so \\boxed{5}", "the set \\{5", "5"):
        assert unclosed_brace(text) is None and MathVerifier()(p, text).correct, text


def test_extraction_order_is_configurable():
    text = "#### 5\nThe answer is 6. \\boxed{7} and then 8"
    assert extract_answer(text, ["boxed"]) == "7"
    assert extract_answer(text, ["gsm8k", "boxed"]) == "5"
    assert extract_answer(text, ["answer_is"]) == "6"
    assert extract_answer(text, ["last_number"]) == "8"
    only_boxed = MathVerifier(extract=("boxed",))
    v = only_boxed(Problem("p", "q", answer="8"), "the result is 8")
    assert not v.correct and v.error == "no answer found" and v.extracted is None
    with pytest.raises(ValueError, match="unknown extractor"):
        MathVerifier(extract=("boxed", "bogus"))


def test_verdict_records_extracted_answer_and_reason(verifier):
    p = Problem("p", "q", answer="\\frac{1}{2}")
    right = verifier(p, boxed("0.5"))
    assert right.extracted == "0.5" and right.error is None
    wrong = verifier(p, boxed("\\frac{1}{3}"))
    assert wrong.extracted == "\\frac{1}{3}" and wrong.error == "not equivalent"
    unreadable = verifier(p, boxed("?!"))
    assert not unreadable.correct and unreadable.error.startswith("parse error")
    with pytest.raises(ValueError, match="no gold answer"):
        verifier(Problem("p", "q"), "\\boxed{1}")


def test_plain_strings_are_accepted_and_verifier_pickles(verifier):
    clone = pickle.loads(pickle.dumps(verifier))
    assert clone(Problem("p", "q", answer="3"), "\\boxed{3}").correct


def test_fast_path_agrees_with_math_verify():
    """Number pairs decided without sympy must get math-verify's own verdict."""
    from math_verify import parse, verify

    rng = random.Random(0)
    numbers = ["0", "1", "-1", "7", "72", "72.0", "0.5", "0.50", ".5", "-.5", "3.14", "3.1400001", "1,000", "1000",
               "1,234,567", "1234567", "-0.25", "2.5", "2.05", "100", "99.999999", "1e3", "12", "012", "+12",
               "\\frac{1}{2}", "\\dfrac12", "1/2", "-\\frac{1}{4}", "\\frac{-1}{4}", "-1/4", "\\tfrac{144}{2}",
               "\\frac{2}{4}", "\\frac{5}{2}", "5/2", "\\frac{7}{1}", "\\frac{1}{3}", "0.333333", "\\frac{1}{0}"]
    pairs = [(a, b) for a in numbers for b in numbers]
    decided = 0
    for gold, answer in rng.sample(pairs, 400):
        fast = numbers_equal(gold, answer)
        if fast is None:
            continue
        decided += 1
        truth = verify(parse(f"\\boxed{{{gold}}}"), parse(f"\\boxed{{{answer}}}"))
        assert fast == truth, (gold, answer)
    assert decided > 250


def test_spacing_shortcut_keeps_math_verify_meaning():
    """Strings equal up to `squeeze` are declared equivalent without sympy: squeezing must not change meaning."""
    from math_verify import parse, verify

    texts = sorted({gold for _, gold, _, _ in TABLE}) + [
        "1, 000", "12, 345", "( 1, 2 ]", "x = 3", "f(x) = x + 1", "\\{ 1, 2 \\}", "a\\ + b", "y \\leq 2 x - 1",
        "\\left( x \\right)", "\\frac{ 1 }{ 2 }", "x^{ 2 } + 1", "\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}"]
    for text in texts:
        squeezed = parse(f"\\boxed{{{squeeze(text)}}}")
        assert quick_verdict(text, squeeze(text)) is True
        assert verify(parse(f"\\boxed{{{text}}}"), squeezed), text
    assert squeeze("1, 000") == "1, 000" and squeeze("x = 3") == "x=3"  # math-verify: a set vs a thousand


def test_fast_path_gives_way_when_unsure():
    assert numbers_equal("5", "5.0000001") is None  # math-verify's rounding decides these
    assert numbers_equal("1/3", "0.333333") is None and numbers_equal("x", "1") is None
    assert numbers_equal("\\sqrt{4}", "2") is None and numbers_equal("50\\%", "0.5") is None
    assert numbers_equal("1" * 20, "1" * 20) is None  # beyond float precision
    fast, slow = MathVerifier(), MathVerifier(fast_path=False)
    p = Problem("p", "q", answer="1,000")
    for text in [boxed("1000"), boxed("999"), boxed("1000.0")]:
        assert fast(p, text) == slow(p, text)


PATHOLOGICAL = {
    "tower": "\\boxed{10^{10^{10^{10}}}}",
    "long": "\\boxed{" + "1+" * 100_000 + "1}",
    "nested": "\\boxed{" + "\\frac{1}{" * 400 + "2" + "}" * 400 + "}",
}


@pytest.mark.parametrize("name", list(PATHOLOGICAL))
def test_pathological_answers_time_out_from_a_worker_thread(name):
    verifier = MathVerifier(timeout=1.0, max_answer_chars=10**6)
    problem = Problem("p", "q", answer="1")
    verifier(problem, boxed("\\frac{1}{2}"))  # start the worker outside the timed part
    result = {}

    def score():
        start = time.monotonic()
        result["verdict"] = verifier(problem, PATHOLOGICAL[name])
        result["seconds"] = time.monotonic() - start

    thread = threading.Thread(target=score)
    thread.start()
    thread.join(30)
    assert not thread.is_alive()
    verdict = result["verdict"]
    assert not verdict.correct and verdict.reward == 0.0
    assert verdict.error.startswith(("timeout", "parse error")), verdict.error
    assert result["seconds"] < 1.0 + 3.0  # the deadline plus the kill grace and slack for a busy machine
    assert verifier(problem, boxed("1")).correct  # and the next verification works


def test_overly_long_answer_is_refused_before_parsing():
    v = MathVerifier()(Problem("p", "q", answer="1"), "\\boxed{" + "9" * 200_000 + "}")
    assert not v.correct and v.error == "parse error: answer has 200000 characters (limit 1000)"


def test_hard_deadline_kills_code_that_ignores_signals():
    start = time.monotonic()
    ok, reason = call_with_deadline(time.sleep, (60,), timeout=0.5)
    assert not ok and reason.startswith("timeout") and "killed" in reason
    assert time.monotonic() - start < 10
    assert call_with_deadline(pow, (2, 10), timeout=5) == (True, 1024)


def test_two_stage_latex_parsing_gives_the_ll_parse():
    """SLL-first parsing (ANTLR's two-stage strategy) must return exactly what math-verify's own LL parse does,
    including for inputs with syntax errors (reparsed in LL) and the bracket shapes that make LL slow."""
    from math_verify import parse

    from rlvr.verifiers.math_verifier import two_stage_parsing

    answers = [g for _, g, _, _ in TABLE] + [t for _, _, t, _ in TABLE] + [
        "(1, 5]", "[2, 7)", "(-\\infty, 3] \\cup (4, \\infty)", "\\{1, 2, 3\\}", "(1, 2)", "[1, 2]", "x = 3, y = 4",
        "\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "\\frac{3\\pi}{4}", "2\\sqrt{3}", "\\frac{1}{", "(1, 2",
        "\\sqrt[3]{x+1}", "a^{b^{c}}", "\\left( \\frac{1}{2}, 3 \\right]", "1,000,000", "1, 000", "}{"]
    for text in answers:
        expected = [str(x) for x in parse(f"\\boxed{{{text}}}")]
        with two_stage_parsing():
            got = [str(x) for x in parse(f"\\boxed{{{text}}}")]
        assert got == expected, text


def test_table_verdicts_are_the_same_without_two_stage_parsing():
    """The heavy comparison itself (in this process, caches cleared), with and without SLL-first parsing."""
    from latex2sympy2_extended.latex2sympy2 import _Latex2Sympy

    from rlvr.verifiers.math_verifier import Judge, equivalent, gold_answer, parse_answer

    pairs = [(gold_answer(g), extract_answer(t, MathVerifier.extract)) for _, g, t, _ in TABLE]
    pairs = [(g, a) for g, a in pairs if a is not None and quick_verdict(g, a) is None]
    assert len(pairs) > 50
    verdicts = {}
    for two_stage in (False, True):
        parse_answer.cache_clear(), equivalent.cache_clear()
        verdicts[two_stage] = [Judge(20.0, 6, 15, True, two_stage)(g, a) for g, a in pairs]
    assert verdicts[True] == verdicts[False]
    assert _Latex2Sympy._rlvr_two_stage  # the wrapper is installed (it is a no-op outside two_stage_parsing)
