"""Scoring code of other libraries that `eval`s a model's answer runs with `eval`/`exec` guarded: answers that are
code are refused (and the refusal recorded), never run; the expressions those libraries legitimately evaluate
(list literals, arithmetic, sympy's generated code) give what the plain builtins give."""

import builtins
import os

import pytest
import sympy
from sympy.parsing.sympy_parser import parse_expr

from rlvr.verifiers.guarded_eval import CodeRefused, guarded_eval, no_code_execution

ATTACKS = [
    '__import__("os").system("touch {f}")',
    '().__class__.__bases__[0].__subclasses__()',
    'open("{f}", "w").write("x")',
    '[x for x in ().__class__.__mro__]',
    '(lambda: open("{f}", "w"))()',
    'exec("open(\'{f}\', \'w\')")',
    'getattr(__builtins__, "open")("{f}", "w")',
]


@pytest.mark.parametrize("attack", ATTACKS)
def test_an_answer_that_is_code_does_not_run(tmp_path, attack):
    target = tmp_path / "pwned"
    code = attack.format(f=target)
    with no_code_execution() as refused:
        with pytest.raises(Exception):
            eval(code)  # as reasoning-gym's list-answer scorers call it
        with pytest.raises(Exception):
            parse_expr(code)  # as its sympy-based scorers do
    assert not target.exists()
    assert builtins.eval is not guarded_eval and refused is not None  # restored after the block
    os.environ.get("HOME")  # the process is unharmed


def test_refusals_are_recorded_and_compiled_code_is_refused():
    with no_code_execution() as refused:
        with pytest.raises(CodeRefused):
            eval("__import__('os')")
        with pytest.raises(CodeRefused, match="compiled"):
            eval(compile("1 + 1", "<x>", "eval"))
        with pytest.raises(CodeRefused, match="exec"):
            exec("x = 1")
        import sympy.tensor.tensor  # noqa: F401  (a first import: the import system execs the module's code)
    assert len(refused) == 3 and "__import__" in refused[0]


def test_what_scorers_legitimately_evaluate_is_unchanged():
    x, C = sympy.symbols("x C")
    samples = ["x**2/2 + C", "sin(x) + 3*exp(2*x)", "(3 + 4) * 2 - 1", "sqrt(x)/log(x)", "2x + 1"]
    plain = [parse_expr(s, local_dict={"x": x, "C": C}, transformations="all") for s in samples]
    with no_code_execution() as refused:
        guarded = [parse_expr(s, local_dict={"x": x, "C": C}, transformations="all") for s in samples]
        assert eval("['a', 'b', 'c']") == ["a", "b", "c"] and eval("[[1, 0], [0, 1]]") == [[1, 0], [0, 1]]
        assert eval("0x3a + (5 << 2) ^ 7") == 0x3a + (5 << 2) ^ 7
    assert guarded == plain and refused == []
