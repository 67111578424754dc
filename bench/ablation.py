"""DAPO's ablation at CPU scale: naive GRPO, then overlong shaping, clip-higher, token-level loss and dynamic
sampling added one at a time (= DAPO), beside GSPO, REINFORCE with a group-mean baseline and Dr. GRPO. Every
variant is a configuration of a registered algorithm (algo + algo_kwargs + verifier), run on the tiny model with
the same budget of generated tokens, from one shared warm-started model per (task, seed).

    python bench/ablation.py [--quick] [--seeds 0 1 2] [--tasks arithmetic countdown] [--variants grpo dapo ...]
                             [--budget TOKENS] [--minibatch-size 64] [--out bench/results/ablation]

Prints a markdown table (final held-out greedy pass@1, mean +- std over seeds; steps and tokens to reach a target
accuracy), and writes `ablation-<tasks>.png` (curves) and `ablation-<tasks>.json` (every record) under --out. Warm-started models
are kept in bench/results/init/ and each finished run in --out/runs/, so a rerun only does what is missing (and
seeds can run in parallel processes, then one more invocation with all of them prints the whole table).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

import rlvr
from rlvr.models import load_policy
from rlvr.trainer import TrainConfig, Trainer
from rlvr.types import Problem
from rlvr.verifiers import VERIFIERS, Compose
from rlvr.verifiers.overlong import OverlongPenalty
from rlvr.warmstart import AnswerTargets, supervised_warmstart


@dataclass(frozen=True)
class Variant:
    """One row of the ablation: a registered algorithm, its overrides, and whether overlong shaping is on."""

    label: str
    algo: str
    algo_kwargs: dict[str, Any] = field(default_factory=dict)
    overlong: bool = False


# The DAPO chain keeps beta = 0 throughout (DAPO drops the KL term before its ablation), so each row adds one thing.
VARIANTS = {
    "grpo": Variant("naive GRPO", "grpo", {"beta": 0.0}),
    "overlong": Variant("+ overlong shaping", "grpo", {"beta": 0.0}, overlong=True),
    "clip_higher": Variant("+ clip-higher", "grpo", {"beta": 0.0, "eps_high": 0.28}, overlong=True),
    "token_loss": Variant("+ token-level loss", "grpo", {"beta": 0.0, "eps_high": 0.28, "aggregation": "token-mean"},
                          overlong=True),
    "dapo": Variant("+ dynamic sampling (= DAPO)", "dapo", {}, overlong=True),
    "gspo": Variant("GSPO", "gspo", {}),
    "reinforce": Variant("REINFORCE (group-mean baseline)", "reinforce", {}),
    "dr_grpo": Variant("Dr. GRPO", "dr_grpo", {}),
}


@dataclass(frozen=True)
class Task:
    """An embedded task, its generation length, the warm-start that gives the tiny model a starting point, the
    token budget of one run and the held-out accuracy whose first crossing is reported."""

    env: str
    env_kwargs: dict[str, Any]
    verifier: str
    max_new_tokens: int
    budget: int
    target: float
    warmstart_continue_prob: float = 0.0
    warmstart_on_solution: bool = False  # Countdown: imitate the reference expression (its `answer` is the target)
    warmstart_steps: int | None = None  # None: Settings.warmstart_steps
    overlong_cache: int | None = None  # DAPO's L_cache (L_max = max_new_tokens); None: max_new_tokens // 2

    @property
    def cache_length(self) -> int:
        return self.max_new_tokens // 2 if self.overlong_cache is None else self.overlong_cache


TASKS = {
    # level 2 (two-digit +- one-digit); the warm-start teaches answers but, with continue_prob, also to ramble on
    # after them, so greedy held-out accuracy starts near 0 and RL must teach the model to answer and stop.
    "arithmetic": Task("rlvr/Arithmetic-v0", {"level": 2}, "math", max_new_tokens=8, budget=60_000, target=0.5,
                       warmstart_continue_prob=0.7),
    # three numbers in 1..9; the warm-start imitates one reference expression per problem, and the short prompt
    # keeps a step affordable for a character-level model (the default prompt is 130 characters). After 1500
    # warm-start steps the model is at 7% greedy / 1.6% sampled, too weak for any group to hold a success; after
    # 3000, ~40% greedy / ~20% sampled, with room above it. Its answers (`(a+b)*c = target`) run to ~15 tokens:
    # L_max = 24 with L_cache = 8 penalises only what runs past them (with L_max = 16, L_cache = 8 the penalty hit
    # nearly every answer, right or wrong, and every overlong row collapsed to empty completions)
    "countdown": Task("rlvr/Countdown-v0", {"num_numbers": 3, "max_number": 9, "prompt": "{numbers} -> {target}:"},
                      "countdown", max_new_tokens=24, budget=60_000, target=0.6, warmstart_on_solution=True,
                      warmstart_steps=3000, overlong_cache=8),
}


INIT_DIR = Path("bench/results/init")


@dataclass
class Settings:
    """What every run shares."""

    num_prompts: int = 16
    group_size: int = 8
    minibatch_size: int = 64  # completions per optimizer step: 2 steps per batch, so the policy moves off the
    # sampling policy and the clip ranges (clip-higher, GSPO's) bind; with one step per batch the ratio stays 1
    lr: float = 1e-3
    warmstart_steps: int = 1500  # the base model these results were measured from: 1000 steps stop on a plateau
    warmstart_lr: float = 6e-3
    eval_problems: int = 100
    evals: int = 12  # held-out evaluations per run, evenly spaced in tokens (plus one at the start)


def make_verifier(task: Task, variant: Variant) -> Any:
    """The task's verifier, plus DAPO's overlong shaping with L_max = max_new_tokens and the task's L_cache."""
    base = VERIFIERS.make(task.verifier)
    if not variant.overlong:
        return base
    shaping = OverlongPenalty(max_length=task.max_new_tokens, cache_length=task.cache_length)
    return Compose([base, shaping], names=[task.verifier, "overlong"])


class SolutionEnv:
    """A view of a Countdown env whose gold `answer` is the reference expression, for the warm-start to imitate."""

    def __init__(self, env: Any) -> None:
        self.env = env
        self.source = self

    def sample(self, rng: np.random.Generator) -> Problem:
        problem = self.env.source.sample(rng)
        return dataclasses.replace(problem, answer=problem.meta["solution"])

    def format_prompt(self, problem: Problem) -> str:
        return self.env.format_prompt(problem)


def warmstart_steps(task: Task, settings: Settings) -> int:
    return settings.warmstart_steps if task.warmstart_steps is None else task.warmstart_steps


def task_config(task: Task, settings: Settings) -> dict[str, int]:
    """What a cached run must have been made with, besides the shared Settings and the budget."""
    return {"warmstart_steps": warmstart_steps(task, settings), "max_new_tokens": task.max_new_tokens,
            "overlong_cache": task.cache_length}


def starting_point(task_name: str, seed: int, settings: Settings, init_dir: Path) -> Path:
    """The shared warm-started tiny model of (task, seed), saved once under `init_dir` and reused by every variant
    (and by bench/vs_trl.py)."""
    task = TASKS[task_name]
    steps = warmstart_steps(task, settings)
    path = init_dir / f"{task_name}-seed{seed}-ws{steps}"
    if (path / "config.json").exists():
        return path
    torch.manual_seed(seed)
    model, tokenizer = load_policy("tiny")
    env = rlvr.make(task.env, **task.env_kwargs, split="train").unwrapped
    if steps:
        targets = AnswerTargets(SolutionEnv(env) if task.warmstart_on_solution else env, tokenizer,
                                continue_prob=task.warmstart_continue_prob)
        supervised_warmstart(model, tokenizer, targets, steps, lr=settings.warmstart_lr, seed=seed + 1)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def run(task_name: str, key: str, seed: int, budget: int, settings: Settings, root: Path,
        init_dir: Path) -> dict[str, Any]:
    """One run: RL steps until `budget` generated tokens, with held-out greedy pass@1 every budget/evals tokens.
    A finished run's result is kept in its run directory and reused when the same run is asked for again."""
    task, variant = TASKS[task_name], VARIANTS[key]
    run_dir = root / "runs" / f"{task_name}-{key}-seed{seed}"
    cached = run_dir / "result.json"
    if cached.exists():
        result = json.loads(cached.read_text())
        if result["budget"] == budget and result["settings"] == dataclasses.asdict(settings) \
                and {k: result["config"].get(k, v) for k, v in task_config(task, settings).items()} \
                == task_config(task, settings):
            return result
    init = starting_point(task_name, seed, settings, init_dir)
    cfg = TrainConfig(model=str(init), env=task.env,
                      env_kwargs={**task.env_kwargs, "verifier": make_verifier(task, variant)},
                      algo=variant.algo, algo_kwargs=dict(variant.algo_kwargs), device="cpu",
                      num_prompts=settings.num_prompts, group_size=settings.group_size,
                      minibatch_size=settings.minibatch_size, max_new_tokens=task.max_new_tokens, lr=settings.lr,
                      warmstart_steps=0, eval_problems=settings.eval_problems, eval_k=1, save_every=0, eval_every=0,
                      out_dir=str(run_dir), seed=seed, threads=1, progress=False)
    trainer = Trainer(cfg)
    start = time.perf_counter()
    curve = [{"step": 0, "tokens": 0, **trainer.evaluate()}]
    records, tokens, next_eval = [], 0.0, budget / settings.evals
    while tokens < budget:
        record = trainer.train_step()
        tokens += record["gen/tokens"]
        record["tokens"] = tokens
        if tokens >= next_eval or tokens >= budget:
            evaluation = trainer.evaluate()
            record.update(evaluation)
            curve.append({"step": trainer.step, "tokens": tokens, **evaluation})
            while next_eval <= tokens:
                next_eval += budget / settings.evals
        records.append(record)
    result = {"task": task_name, "variant": key, "label": variant.label, "seed": seed, "budget": budget,
              "seconds": time.perf_counter() - start, "curve": curve, "records": records,
              "settings": dataclasses.asdict(settings),
              "config": {"algo": variant.algo, "algo_kwargs": variant.algo_kwargs, "overlong": variant.overlong,
                         **task_config(task, settings)}}
    run_dir.mkdir(parents=True, exist_ok=True)
    cached.write_text(json.dumps(result))
    return result


def reach(curve: list[dict[str, Any]], target: float) -> tuple[int, float] | None:
    """(step, tokens) of the first evaluation at or above `target`, or None."""
    for point in curve:
        if point["eval/pass@1"] >= target:
            return point["step"], point["tokens"]
    return None


def summarise(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (task, variant): start and final held-out pass@1 over seeds, and the target crossings."""
    rows = []
    for task_name in dict.fromkeys(r["task"] for r in results):
        for key in dict.fromkeys(r["variant"] for r in results if r["task"] == task_name):
            runs = [r for r in results if r["task"] == task_name and r["variant"] == key]
            final = np.array([r["curve"][-1]["eval/pass@1"] for r in runs])
            hits = [h for h in (reach(r["curve"], TASKS[task_name].target) for r in runs) if h is not None]
            rows.append({
                "task": task_name, "variant": key, "label": runs[0]["label"], "seeds": len(runs),
                "start": float(np.mean([r["curve"][0]["eval/pass@1"] for r in runs])),
                "final_mean": float(final.mean()), "final_std": float(final.std()),
                "peak_mean": float(np.mean([max(p["eval/pass@1"] for p in r["curve"]) for r in runs])),
                "train_acc_last": float(np.mean([np.mean([x["accuracy"] for x in r["records"][-5:]]) for r in runs])),
                "steps": float(np.mean([len(r["records"]) for r in runs])),
                "target": TASKS[task_name].target, "reached": len(hits),
                "steps_to_target": float(np.mean([h[0] for h in hits])) if hits else None,
                "tokens_to_target": float(np.mean([h[1] for h in hits])) if hits else None,
                "minutes": float(np.mean([r["seconds"] for r in runs]) / 60),
            })
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| task | variant | held-out pass@1 start | final (mean ± std) | peak (mean) | train acc (last 5 steps) "
             "| steps | reached target | steps to target | tokens to target | min/run |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        to_steps = f"{r['steps_to_target']:.0f}" if r["reached"] else "—"
        to_tokens = f"{r['tokens_to_target'] / 1000:.0f}k" if r["reached"] else "—"
        lines.append(f"| {r['task']} | {r['label']} | {r['start']:.1%} | {r['final_mean']:.1%} ± {r['final_std']:.1%} "
                     f"| {r['peak_mean']:.1%} | {r['train_acc_last']:.1%} | {r['steps']:.0f} | {r['reached']}/{r['seeds']} "
                     f"(≥{r['target']:.0%}) | {to_steps} | {to_tokens} | {r['minutes']:.1f} |")
    return "\n".join(lines)


def plot(results: list[dict[str, Any]], path: Path) -> None:
    """Held-out pass@1 and training accuracy against generated tokens, mean over seeds, one column per task."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(r["task"] for r in results))
    fig, axes = plt.subplots(2, len(tasks), figsize=(6 * len(tasks), 8), squeeze=False)
    for col, task_name in enumerate(tasks):
        for key in dict.fromkeys(r["variant"] for r in results if r["task"] == task_name):
            runs = [r for r in results if r["task"] == task_name and r["variant"] == key]
            n = min(len(r["curve"]) for r in runs)
            x = np.mean([[p["tokens"] for p in r["curve"][:n]] for r in runs], axis=0) / 1000
            y = np.mean([[p["eval/pass@1"] for p in r["curve"][:n]] for r in runs], axis=0)
            line, = axes[0, col].plot(x, y, marker="o", ms=3, label=VARIANTS[key].label)
            m = min(len(r["records"]) for r in runs)
            tx = np.mean([[p["tokens"] for p in r["records"][:m]] for r in runs], axis=0) / 1000
            ty = np.mean([[p["accuracy"] for p in r["records"][:m]] for r in runs], axis=0)
            window = max(1, m // 20)
            smooth = np.convolve(ty, np.ones(window) / window, mode="valid")
            axes[1, col].plot(tx[window - 1:], smooth, color=line.get_color(), label=VARIANTS[key].label)
        axes[0, col].set_title(f"{task_name}: held-out greedy pass@1")
        axes[1, col].set_title(f"{task_name}: training accuracy (sampled, smoothed)")
        for ax in axes[:, col]:
            ax.set_xlabel("generated tokens (thousands)")
            ax.grid(alpha=0.3)
        axes[0, col].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few minutes: 1 seed, 3 variants, a tiny budget")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="seeds to run (default 0 1 2; quick: 0)")
    parser.add_argument("--tasks", nargs="+", choices=list(TASKS), default=None)
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=None)
    parser.add_argument("--budget", type=int, default=None, help="generated tokens per run (default: per task)")
    parser.add_argument("--warmstart-steps", type=int, default=Settings.warmstart_steps,
                        help="warm-start steps of tasks that do not set their own (Countdown: 3000)")
    parser.add_argument("--minibatch-size", type=int, default=Settings.minibatch_size,
                        help="completions per optimizer step (0: one step per batch, fully on-policy)")
    parser.add_argument("--lr", type=float, default=Settings.lr, help="RL learning rate (use another --out)")
    parser.add_argument("--out", type=Path, default=None,
                        help="default bench/results/ablation (quick: bench/results/ablation-quick)")
    parser.add_argument("--init-dir", type=Path, default=INIT_DIR, help="where the warm-started models are kept")
    args = parser.parse_args(argv)
    args.out = args.out or Path("bench/results/ablation-quick" if args.quick else "bench/results/ablation")
    seeds = args.seeds or ([0] if args.quick else [0, 1, 2])
    tasks = args.tasks or (["arithmetic"] if args.quick else list(TASKS))
    variants = args.variants or (["grpo", "dapo", "dr_grpo"] if args.quick else list(VARIANTS))
    settings = Settings(warmstart_steps=args.warmstart_steps, minibatch_size=args.minibatch_size, lr=args.lr,
                        eval_problems=50 if args.quick else 100, evals=4 if args.quick else Settings.evals)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "ablation-" + "-".join(tasks)  # one file per task set, so a run of one task keeps another's results
    torch.set_num_threads(1)
    results = []
    for task_name in tasks:
        budget = args.budget or (TASKS[task_name].budget // 10 if args.quick else TASKS[task_name].budget)
        for seed in seeds:
            for key in variants:
                result = run(task_name, key, seed, budget, settings, args.out, args.init_dir)
                results.append(result)
                print(f"{task_name} {key} seed {seed}: pass@1 {result['curve'][0]['eval/pass@1']:.1%} -> "
                      f"{result['curve'][-1]['eval/pass@1']:.1%} in {len(result['records'])} steps, "
                      f"{result['seconds']:.0f} s", flush=True)
                (args.out / f"{stem}.json").write_text(json.dumps(
                    {"settings": dataclasses.asdict(settings), "seeds": seeds, "results": results}, indent=1))
    rows = summarise(results)
    budgets = ", ".join(f"{r['task']}: {r['budget']}" for r in {r["task"]: r for r in results}.values())
    print(f"\nTokens per run: {budgets}; B = {settings.num_prompts} prompts x G = {settings.group_size}; "
          f"{len(seeds)} seed(s); warm-start steps: "
          + ", ".join(f"{t}: {warmstart_steps(TASKS[t], settings)}" for t in tasks) + "\n")
    print(markdown(rows))
    plot(results, args.out / f"{stem}.png")
    (args.out / f"{stem}.json").write_text(json.dumps(
        {"settings": dataclasses.asdict(settings), "seeds": seeds, "summary": rows, "results": results}, indent=1))
    print(f"\nwrote {args.out / stem}.png and {args.out / stem}.json")
    return rows


if __name__ == "__main__":
    main()
