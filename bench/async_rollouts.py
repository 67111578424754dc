"""Synchronous against asynchronous rollouts on the demo task, and the behaviour correction under a mismatched
engine.

    python bench/async_rollouts.py [--seeds 0 1] [--steps 30] [--repeats 3] [--sigma 0.1] [--skip-mismatch] [--out DIR]

Every side is one `rlvr train` run of the demo's configuration (rlvr/Arithmetic-v0 level 2, DAPO, B = 32, G = 8,
30 steps) from one shared warm-started model per seed (the demo's warm-start, saved once under
bench/results/init/), each in its own process, one after the other, nothing else running:

- timing: `async_rollouts` 0 (the synchronous trainer, every core, and on one thread), 1 and 2 (learner and
  worker a core each), at the demo's learning rate (5e-4) and at 1e-3 (for k = 2 also with a tighter correction,
  token_mask at cap 2 with IcePop's lower bound 0.5), each against the synchronous trainer at its learning rate:
  RL-phase wall time (the first step's start to the last step's end), steps/s, the learner's idle fraction (waiting
  for a batch), the engine's (not generating), and held-out greedy pass@1 after the same number of steps.
- mismatch: the synchronous trainer with an engine that samples from a perturbed copy of the policy (every weight
  times 1 + sigma * N(0, 1), drawn again at every sync), without a correction and with each `is_correction` mode.

The machine's speed drifts from run to run by about the size of the effect, so the headline sides (REPEATED) run
--repeats times, interleaved with every other side, and their medians are reported. Prints markdown tables and
writes `async.json` under --out.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

INIT_DIR = Path("bench/results/init")
TIMING = {"sync": {"async_rollouts": 0}, "sync, 1 thread": {"async_rollouts": 0, "threads": 1},
          "async=1": {"async_rollouts": 1}, "async=2": {"async_rollouts": 2},
          "sync, lr 1e-3": {"async_rollouts": 0, "lr": 1e-3}, "async=1, lr 1e-3": {"async_rollouts": 1, "lr": 1e-3},
          "async=2, lr 1e-3": {"async_rollouts": 2, "lr": 1e-3},
          "async=2, lr 1e-3, IcePop mask": {"async_rollouts": 2, "lr": 1e-3, "is_correction": "token_mask",
                                            "is_cap": 2.0, "is_mask_low": 0.5}}
SYNC_AT_LR = {None: "sync", 1e-3: "sync, lr 1e-3"}  # each side's baseline: the synchronous trainer at its lr
REPEATED = ("sync", "async=1", "sync, lr 1e-3", "async=1, lr 1e-3")  # timed --repeats times, medians reported
MISMATCH = {"none": None, "token_truncate": "token_truncate", "token_mask": "token_mask",
            "sequence_truncate": "sequence_truncate", "sequence_mask": "sequence_mask"}


class PerturbedEngine:
    """The hf engine over its own copy of the policy, every weight multiplied by 1 + sigma * N(0, 1) at each sync: a
    behaviour policy mu deliberately different from the learner's pi_old (as a bf16 or quantised engine is)."""

    def __init__(self, policy: torch.nn.Module, tokenizer: Any, sigma: float, seed: int, **engine_kwargs: Any):
        from rlvr.rollout.hf import HFEngine

        self.copy, self.sigma = copy.deepcopy(policy), sigma
        self.noise = torch.Generator().manual_seed(seed)
        self.engine = HFEngine(self.copy, tokenizer, **engine_kwargs)
        self.sync_weights(policy)

    @torch.no_grad()
    def sync_weights(self, model: torch.nn.Module) -> None:
        for mine, theirs in zip(self.copy.parameters(), model.parameters()):
            noise = torch.randn(theirs.shape, generator=self.noise, dtype=theirs.dtype)
            mine.copy_(theirs * (1 + self.sigma * noise))

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        return self.engine.generate(*args, **kwargs)


def starting_point(seed: int) -> Path:
    """The demo's warm-started tiny model for `seed`, trained once (an `rlvr train` of 0 RL steps) and reused."""
    path = INIT_DIR / f"demo-seed{seed}"
    if not (path / "checkpoint" / "model").exists():
        subprocess.run([sys.executable, "-m", "rlvr.cli", "train", "--out-dir", str(path), "--steps", "0",
                        f"seed={seed}", "progress=False", "eval_problems=1"], check=True)
    return path / "checkpoint" / "model"


def run_side(side: dict[str, Any]) -> None:
    """One side, in this process: a Trainer on the side's config (with the perturbed engine if it asks for one)."""
    from rlvr.trainer import TrainConfig, Trainer

    values = dict(side["config"])
    sigma = values.pop("perturb_sigma", None)
    trainer = Trainer(TrainConfig(**values))
    if sigma is not None:
        trainer.engine = PerturbedEngine(trainer.rollout_model, trainer.tokenizer, sigma, trainer.cfg.seed,
                                         add_special_tokens=trainer.add_special_tokens)
    trainer.train()


def side_result(out_dir: Path) -> dict[str, float]:
    """The side's numbers, from its metrics.jsonl."""
    records = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "time/elapsed" in r]
    wall = steps[-1]["time/elapsed"]
    evals = [r for r in records if "eval/pass@1" in r]
    result = {"steps": len(steps), "rl_wall_s": wall, "steps_per_s": len(steps) / wall,
              "learner_idle": sum(r["time/wait"] for r in steps) / wall,
              "engine_idle": 1 - sum(r["time/gen"] for r in steps) / wall,
              "pass@1_start": evals[0]["eval/pass@1"], "pass@1": evals[-1]["eval/pass@1"],
              "train_accuracy_last5": float(np.mean([r["accuracy"] for r in steps[-5:]]))}
    for key in ("async/staleness", "logprob_mismatch", "mismatch/k3", "is/truncated_frac", "is/masked_frac"):
        values = [r[key] for r in steps if key in r]
        if values:
            result[key] = float(np.mean(values))
    return result


def summarise(rows: list[dict[str, Any]], group: str) -> list[dict[str, Any]]:
    """Per side of `group` ("timing" or "mismatch"): the median over repeats of each seed, then the mean over
    seeds (the machine's speed drifts from run to run; repeats are interleaved so every side sees the drift)."""
    out = []
    for name in dict.fromkeys(r["side"] for r in rows if r["group"] == group):
        mine = [r for r in rows if r["group"] == group and r["side"] == name]
        seeds = sorted({r["seed"] for r in mine})
        keys = [k for k in mine[0] if isinstance(mine[0][k], float)]
        per_seed = [{k: float(np.median([r[k] for r in mine if r["seed"] == s])) for k in keys} for s in seeds]
        out.append({"side": name, "seeds": len(seeds), "repeats": len(mine) // len(seeds),
                    **{k: float(np.mean([p[k] for p in per_seed])) for k in keys}})
    return out


def tables(rows: list[dict[str, Any]]) -> str:
    timing = summarise(rows, "timing")
    by_side = {r["side"]: r for r in timing}
    lines = ["| rollouts | seeds x repeats | RL wall (s) | steps/s | vs sync | learner idle | engine idle | "
             "staleness | "
             "pass@1 start | pass@1 after the steps |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in timing:  # each side against the synchronous trainer at its learning rate
        base = by_side.get(SYNC_AT_LR[TIMING[r["side"]].get("lr")])
        speedup = f"{r['steps_per_s'] / base['steps_per_s']:.2f}x" if base else "-"
        lines.append(f"| {r['side']} | {r['seeds']} x {r['repeats']} | {r['rl_wall_s']:.1f} | {r['steps_per_s']:.3f} | "
                     f"{speedup} | "
                     f"{r['learner_idle']:.0%} | {r['engine_idle']:.0%} | {r.get('async/staleness', 0):.2f} | "
                     f"{r['pass@1_start']:.1%} | {r['pass@1']:.1%} |")
    mismatch = summarise(rows, "mismatch")
    if mismatch:
        lines += ["", "| is_correction (perturbed engine) | seeds | log-prob mismatch | k3 | truncated | masked | "
                      "train accuracy (last 5) | pass@1 after the steps |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for r in mismatch:
            lines.append(f"| {r['side']} | {r['seeds']} | {r['logprob_mismatch']:.3f} | {r['mismatch/k3']:.4f} | "
                         f"{r.get('is/truncated_frac', 0):.1%} | {r.get('is/masked_frac', 0):.1%} | "
                         f"{r['train_accuracy_last5']:.1%} | {r['pass@1']:.1%} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3, help="runs of each of the REPEATED sides (medians)")
    parser.add_argument("--sigma", type=float, default=0.1, help="the perturbed engine's relative weight noise")
    parser.add_argument("--skip-mismatch", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("bench/results/async"))
    parser.add_argument("--side", help=argparse.SUPPRESS)  # run one side (a JSON spec) in this process
    args = parser.parse_args()
    if args.side:
        return run_side(json.loads(args.side))
    sides = []
    for seed in args.seeds:
        common = dict(model=str(starting_point(seed)), warmstart_steps=0, steps=args.steps, seed=seed,
                      eval_every=args.steps, save_every=0, progress=False)
        sides += [("timing", name, seed, {**common, **extra}) for name, extra in TIMING.items()]
        if not args.skip_mismatch:
            sides += [("mismatch", name, seed, {**common, "is_correction": mode, "perturb_sigma": args.sigma})
                      for name, mode in MISMATCH.items()]
    rows = []
    for repeat in range(args.repeats):  # interleaved: each repeat runs every side once
        for group, name, seed, config in sides:
            if repeat and name not in REPEATED:  # the headline comparison is repeated; the rest run once
                continue
            out = args.out / "runs" / f"{group}-{name.replace(', ', '-').replace(' ', '_')}-seed{seed}-{repeat}"
            config = {**config, "out_dir": str(out)}
            subprocess.run([sys.executable, __file__, "--side", json.dumps({"config": config})], check=True,
                           env={**os.environ, "PYTHONPATH": os.getcwd()})
            rows.append({"group": group, "side": name, "seed": seed, "repeat": repeat, **side_result(out)})
            print(group, name, seed, repeat, json.dumps(rows[-1]), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "async.json").write_text(json.dumps(rows, indent=1))
    print(tables(rows))


if __name__ == "__main__":
    main()
