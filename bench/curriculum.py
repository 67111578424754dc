"""The frontier curriculum against uniform sampling on mixed-difficulty arithmetic.

    python bench/curriculum.py [--seeds 0 1 2] [--steps 60] [--levels 1 2 3 4 5] [--target 0.6] [--out DIR] [--report]
                               [--set KEY=VALUE ...]

Both sides train the demo's tiny model (DAPO, B = 32, G = 8, 8 new tokens) on rlvr/Arithmetic-v0 over the given
levels, drawn uniformly, from one shared warm-started model per seed (the demo's warm-start on the same mixed
levels, saved once under bench/results/init/), each side its own `rlvr train` process, one after the other.
`sampler=uniform` poses each level equally often; `sampler=frontier` (rlvr/sampler.py) draws levels by their
tracked pass rate p as floor + 4 p (1 - p). Every 5 steps both evaluate greedy pass@1 on the same 200 held-out
problems (mixed levels, disjoint by content from training). Reported per side, mean over seeds: generated tokens
(every completion of every round, dynamic sampling's refills included) until held-out pass@1 first reaches
--target, the final pass@1, and the final draw probability of each level. `--set` passes further `rlvr train`
overrides to both sides (`algo_kwargs.dynamic_sampling=False`: DAPO without its refills, where a group of equal
rewards is generated and then carries no gradient).

Prints a markdown table and writes `curriculum.json` and `curriculum.png` under --out.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

INIT_DIR = Path("bench/results/init")
SIDES = {"uniform": {"sampler": "uniform"}, "frontier": {"sampler": "frontier"}}


def starting_point(seed: int, levels: list[int]) -> Path:
    """The demo's warm-start on the mixed levels for `seed` (an `rlvr train` of 0 RL steps), trained once."""
    path = INIT_DIR / f"mixed-L{''.join(map(str, levels))}-seed{seed}"
    if not (path / "checkpoint" / "model").exists():
        subprocess.run([sys.executable, "-m", "rlvr.cli", "train", "--out-dir", str(path), "--steps", "0",
                        f"seed={seed}", f"env_kwargs.level={levels}", "progress=False", "eval_problems=1"],
                       check=True)
    return path / "checkpoint" / "model"


def side_result(out_dir: Path, target: float) -> dict[str, Any]:
    """Held-out pass@1 against cumulative generated tokens, and where it first reached `target`."""
    records = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
    tokens, curve, final_probs = 0.0, [], {}
    for r in records:
        tokens += r.get("gen/tokens", 0.0)
        if "eval/pass@1" in r:
            curve.append((tokens, r["eval/pass@1"]))
        final_probs = {k.split("_")[-1]: v for k, v in r.items() if k.startswith("sampler/prob_")} or final_probs
    reached = next((t for t, p in curve if p >= target), None)
    return {"curve": curve, "tokens_to_target": reached, "final": curve[-1][1], "start": curve[0][1],
            "total_tokens": tokens, "final_probs": final_probs}


def table(rows: list[dict[str, Any]], target: float) -> str:
    lines = [f"| sampler | seeds | held-out pass@1 start | final | generated tokens to reach {target:.0%} "
             "(each seed) | mean | level draw probabilities at the end |", "|---|---:|---:|---:|---|---:|---|"]
    for name in SIDES:
        mine = [r for r in rows if r["side"] == name]
        reached = [r["tokens_to_target"] for r in mine]
        shown = ", ".join("never" if t is None else f"{t / 1e3:.0f}k" for t in reached)
        mean = "-" if None in reached else f"{np.mean(reached) / 1e3:.0f}k"
        probs = mine[-1]["final_probs"]
        levels = ", ".join(f"L{k} {v:.2f}" for k, v in sorted(probs.items())) or "uniform"
        lines.append(f"| {name} | {len(mine)} | {np.mean([r['start'] for r in mine]):.1%} | "
                     f"{np.mean([r['final'] for r in mine]):.1%} | {shown} | {mean} | {levels} |")
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], path: Path, target: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for color, name in zip(("tab:blue", "tab:orange"), SIDES):
        for i, r in enumerate(r for r in rows if r["side"] == name):
            tokens, passed = zip(*r["curve"])
            ax.plot(np.array(tokens) / 1e3, passed, color=color, alpha=0.8, label=name if i == 0 else None)
    ax.axhline(target, color="grey", linestyle=":", label=f"target {target:.0%}")
    ax.set(xlabel="generated tokens (thousands)", ylabel="held-out greedy pass@1",
           title="mixed arithmetic: frontier curriculum vs uniform, a line per seed")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--target", type=float, default=0.6)
    parser.add_argument("--out", type=Path, default=Path("bench/results/curriculum"))
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="overrides for both sides")
    parser.add_argument("--report", action="store_true", help="only redraw the table and figure from --out's JSON "
                                                               "(another --target, say)")
    args = parser.parse_args()
    if args.report:
        rows = json.loads((args.out / "curriculum.json").read_text())
        for row in rows:
            row["tokens_to_target"] = next((t for t, p in row["curve"] if p >= args.target), None)
        plot(rows, args.out / "curriculum.png", args.target)
        return print(table(rows, args.target))
    rows = []
    for seed in args.seeds:
        init = starting_point(seed, args.levels)
        for name, extra in SIDES.items():
            out = args.out / "runs" / f"{name}-seed{seed}"
            cmd = [sys.executable, "-m", "rlvr.cli", "train", "--out-dir", str(out), "--steps", str(args.steps),
                   f"model={init}", f"seed={seed}", f"env_kwargs.level={args.levels}", "warmstart_steps=0",
                   "eval_every=5", "eval_k=1", "save_every=0", "progress=False", "report_to=[]",
                   *args.set, *[f"{k}={v}" for k, v in extra.items()]]
            subprocess.run(cmd, check=True, env={**os.environ, "PYTHONPATH": os.getcwd()})
            rows.append({"side": name, "seed": seed, **side_result(out, args.target)})
            print(name, seed, {k: v for k, v in rows[-1].items() if k != "curve"}, flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "curriculum.json").write_text(json.dumps(rows, indent=1))
    plot(rows, args.out / "curriculum.png", args.target)
    print(table(rows, args.target))


if __name__ == "__main__":
    main()
