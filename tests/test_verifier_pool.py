"""The verifier pool: input order, agreement with SerialExecutor, per-item deadlines, crashing and hanging
verifiers that cost only their own item, progress reports, and workers that import only what they need."""

from __future__ import annotations

import importlib
import os
import sys
import time
from dataclasses import dataclass

import pytest

from rlvr.types import Completion, Problem, Verdict
from rlvr.verifiers import VerifierPool, in_worker, make_executor
from rlvr.verifiers.base import Compose, SerialExecutor
from rlvr.verifiers.math_verifier import MathVerifier
from rlvr.verifiers.overlong import OverlongPenalty


@dataclass
class Misbehaving:
    """Reward = text length; 'crash' kills the worker, 'hang' sleeps past any deadline, 'raise' raises."""

    def __call__(self, problem: Problem, completion: Completion) -> Verdict:
        if completion.text == "crash":
            os._exit(3)
        if completion.text == "hang":
            time.sleep(600)
        if completion.text == "raise":
            raise ValueError("bad input")
        return Verdict(float(len(completion.text)), True, extracted=f"{problem.id}:{os.getpid()}")


@dataclass
class WhereAmI:
    """Reports whether it runs in a pool worker and whether torch was imported there."""

    def __call__(self, problem: Problem, completion: Completion) -> Verdict:
        return Verdict(0.0, in_worker(), extracted=str("torch" in sys.modules))


class CharTokenizer:
    """One token per character."""

    def encode(self, text):
        return list(text)


class Unloadable:
    """Pickles fine, but unpickling imports a module that does not exist."""

    def __reduce__(self):
        return importlib.import_module, ("rlvr_no_such_module",)


class DiesOnLoad:
    """Kills the worker as soon as it is unpickled, before any item starts."""

    def __reduce__(self):
        return os._exit, (5,)


def items(texts: list[str]) -> list[tuple[Problem, Completion]]:
    return [(Problem(f"p{i}", "q"), Completion(t)) for i, t in enumerate(texts)]


@pytest.fixture(scope="module")
def pool():
    with VerifierPool(num_workers=2, timeout=1.0, chunk_size=4, preload=()) as p:
        yield p


def test_order_and_equality_with_serial(pool):
    batch = items(["x" * (i % 17) for i in range(101)])
    got = pool.map(Misbehaving(), batch)
    want = SerialExecutor().map(Misbehaving(), batch)
    assert [v.reward for v in got] == [v.reward for v in want]
    assert [v.extracted.split(":")[0] for v in got] == [p.id for p, _ in batch]
    assert len({v.extracted.split(":")[1] for v in got}) == 2  # both workers took part
    assert pool.map(Misbehaving(), []) == []


def test_math_verifier_in_pool_equals_serial():
    batch = [(Problem(str(i), "q", answer=g), Completion(f"\\boxed{{{a}}}")) for i, (g, a) in
             enumerate([("1/2", "0.5"), ("3", "4"), ("x=2", "2"), ("\\{1,2\\}", "\\{2,1\\}"), ("7", "7")])]
    composed = Compose([MathVerifier(), OverlongPenalty(max_length=4, cache_length=2, tokenizer=CharTokenizer())])
    with VerifierPool(num_workers=2, timeout=20) as pool:
        got = pool.map(MathVerifier(), batch)
        got_composed = pool.map(composed, batch)
    assert got == SerialExecutor().map(MathVerifier(), batch)
    assert [v.correct for v in got] == [True, False, True, True, True]
    assert got_composed == SerialExecutor().map(composed, batch)
    assert [v.parts["overlong"] for v in got_composed] == [-1.0, -1.0, -1.0, -1.0, -1.0]


@pytest.mark.parametrize("bad,reason", [("crash", "crash: worker process died (exit code 3)"),
                                        ("hang", "timeout: no verdict within the 1 s deadline"),
                                        ("raise", "exception: ValueError: bad input")])
def test_bad_item_costs_only_itself_and_pool_stays_usable(pool, bad, reason):
    texts = ["a" * (i + 1) for i in range(10)]
    texts[5] = bad  # in the middle of a chunk: its neighbours must be redone, not lost
    pids_before = {w.proc.pid for w in pool._workers}
    start = time.monotonic()
    got = pool.map(Misbehaving(), items(texts))
    assert time.monotonic() - start < 30
    assert got[5].reward == 0.0 and not got[5].correct and got[5].error.startswith(reason), got[5]
    assert [v.reward for i, v in enumerate(got) if i != 5] == [float(len(t)) for i, t in enumerate(texts) if i != 5]
    assert all(v.error is None for i, v in enumerate(got) if i != 5)
    if bad != "raise":
        assert {w.proc.pid for w in pool._workers} != pids_before  # the failed worker was replaced
    assert len(pool._workers) == 2
    assert [v.reward for v in pool.map(Misbehaving(), items(["ab", "abc"]))] == [2.0, 3.0]


def test_progress_reports_every_item(pool):
    seen = []
    pool.map(Misbehaving(), items(["x"] * 9 + ["crash"]), progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (10, 10)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen) and all(t == 10 for _, t in seen)


def test_workers_know_they_are_workers_and_skip_torch(pool):
    verdicts = pool.map(WhereAmI(), items(["x", "y"]))
    assert all(v.correct for v in verdicts)  # in_worker() is true there
    assert [v.extracted for v in verdicts] == ["False", "False"]  # torch is not imported in workers
    assert not in_worker()


def test_unpicklable_and_unloadable_verifiers_raise_clear_errors(pool):
    with pytest.raises(TypeError, match="cannot be pickled"):
        pool.map(lambda p, c: Verdict(1.0, True), items(["x"]))
    with pytest.raises(RuntimeError, match="could not unpickle the verifier.*rlvr_no_such_module"):
        pool.map(Unloadable(), items(["x", "y"]))
    assert [v.reward for v in pool.map(Misbehaving(), items(["abc"]))] == [3.0]


def test_workers_that_die_before_any_item_raise():
    with VerifierPool(num_workers=1, timeout=1.0, preload=()) as pool:
        with pytest.raises(RuntimeError, match="keep failing before scoring any item"):
            pool.map(DiesOnLoad(), items(["x"]))
        assert [v.reward for v in pool.map(Misbehaving(), items(["ab"]))] == [2.0]


def test_make_executor_and_argument_checks():
    assert isinstance(make_executor("serial"), SerialExecutor)
    pool = make_executor("process", num_workers=1, timeout=2.0)
    assert isinstance(pool, VerifierPool) and pool.num_workers == 1 and pool.timeout == 2.0
    pool.close()
    with pytest.raises(RuntimeError, match="closed"):
        pool.map(Misbehaving(), items(["x"]))
    with pytest.raises(ValueError, match="unknown executor 'threads'; known: process, ray, serial"):
        make_executor("threads")
    with pytest.raises(ValueError, match="timeout must be > 0"):
        VerifierPool(timeout=0)
    with pytest.raises(ValueError, match="num_workers must be >= 1"):
        VerifierPool(num_workers=0)


def test_close_leaves_no_worker_behind():
    pool = VerifierPool(num_workers=2, preload=())
    pool.map(Misbehaving(), items(["x", "y"]))
    procs = [w.proc for w in pool._workers]
    pool.close()
    assert all(p.poll() is not None for p in procs)
