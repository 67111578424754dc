"""rlvr against TRL's GRPOTrainer on CPU: the same saved tiny model, task, batch, group size, completion length,
loss (token-mean clipped surrogate, eps 0.2/0.28, no KL), optimizer and number of steps. Each side runs in its own
process (so peak RSS is its own); reports step time (median, IQR), generated tokens/s, peak RSS, the reward curve,
held-out greedy pass@1 after training, and the rlvr/TRL ratios.

TRL is a bench-only dependency: run this with an interpreter that has it (e.g. /work/main/.venv-bench).

    .venv-bench/bin/python bench/vs_trl.py [--steps 20] [--prompts 16] [--group-size 8] [--out bench/results/vs_trl]

Writes `vs_trl.json` (raw per-step records) and `vs_trl.png` (reward and step-time curves) under --out.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class Shared:
    """The settings both sides run with."""

    model: str = ""  # a directory written by save_pretrained
    level: int = 2
    steps: int = 20
    prompts: int = 16  # B
    group_size: int = 8  # G
    max_new_tokens: int = 8
    lr: float = 1e-3
    warmup_steps: int = 5
    eps_low: float = 0.2
    eps_high: float = 0.28
    seed: int = 0


def config_mapping(s: Shared) -> list[tuple[str, str, str]]:
    """(setting, rlvr TrainConfig / algorithm, TRL GRPOConfig) rows, printed so the equivalence can be checked."""
    return [
        ("model", f"model={s.model}", f"model={s.model} (AutoModelForCausalLM)"),
        ("prompts per step", f"num_prompts={s.prompts}", f"per_device_train_batch_size={s.prompts * s.group_size} "
                                                          f"(completions) / num_generations"),
        ("group size", f"group_size={s.group_size}", f"num_generations={s.group_size}"),
        ("completion length", f"max_new_tokens={s.max_new_tokens}", f"max_completion_length={s.max_new_tokens}"),
        ("sampling", "temperature=1, top_p=1, top_k=0", "temperature=1, top_p=1, top_k=0"),
        ("advantage", "dapo: (r - mean) / (std + 1e-6) per group", "scale_rewards='group'"),
        ("loss", "dapo: aggregation='token-mean'", "loss_type='dapo'"),
        ("clip", f"eps_low={s.eps_low}, eps_high={s.eps_high}", f"epsilon={s.eps_low}, epsilon_high={s.eps_high}"),
        ("KL", "beta=0 (no reference model)", "beta=0.0 (no reference model)"),
        ("dynamic sampling", "dynamic_sampling=False (TRL has none)", "—"),
        ("updates per batch", "epochs=1, minibatch = whole batch", "num_iterations=1, gradient_accumulation_steps=1"),
        ("optimizer", f"AdamW lr={s.lr}, betas (0.9, 0.99), wd 0, clip 1.0",
         f"adamw_torch lr={s.lr}, adam_beta2=0.99, weight_decay=0, max_grad_norm=1.0"),
        ("schedule", f"linear warm-up {s.warmup_steps} steps, then constant",
         f"constant_with_warmup, warmup_steps={s.warmup_steps}"),
        ("reward", "rlvr math verifier", "the same rlvr math verifier, as a reward function"),
        ("generation", "rlvr hf engine (its own decode loop)", "use_vllm=False (transformers generate)"),
        ("threads", "torch.set_num_threads(1)", "torch.set_num_threads(1)"),
    ]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_rlvr(s: Shared, save_to: Path) -> list[dict[str, Any]]:
    """rlvr's Trainer driven step by step: collect (generate + verify) and update, timed together."""
    from rlvr.trainer import TrainConfig, Trainer

    cfg = TrainConfig(model=s.model, env_kwargs={"level": s.level}, algo="dapo",
                      algo_kwargs={"eps_low": s.eps_low, "eps_high": s.eps_high, "dynamic_sampling": False},
                      device="cpu", steps=s.steps, num_prompts=s.prompts, group_size=s.group_size,
                      max_new_tokens=s.max_new_tokens, lr=s.lr, warmup_steps=s.warmup_steps, warmstart_steps=0,
                      eval_every=0, save_every=0, out_dir="/tmp/rlvr-vs-trl", seed=s.seed, threads=1, progress=False)
    trainer = Trainer(cfg)
    records = []
    for _ in range(s.steps):
        record = trainer.train_step()
        records.append({"step": record["step"], "time": record["time/step"], "reward": record["reward"],
                        "tokens": record["gen/tokens"]})
    trainer.model.save_pretrained(save_to / "model")
    trainer.tokenizer.save_pretrained(save_to / "model")
    return records


def run_trl(s: Shared, save_to: Path) -> list[dict[str, Any]]:
    """TRL's GRPOTrainer with the mapped GRPOConfig; step times from a callback, rewards and lengths from its logs."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    import rlvr
    from rlvr.types import Completion, Problem
    from rlvr.verifiers import VERIFIERS

    env = rlvr.make("rlvr/Arithmetic-v0", level=s.level, split="train").unwrapped
    rng = np.random.default_rng(s.seed)
    problems = [env.source.sample(rng) for _ in range(s.prompts * s.steps)]
    dataset = Dataset.from_list([{"prompt": env.format_prompt(p), "answer": p.answer} for p in problems])
    verifier = VERIFIERS.make("math")

    def reward(prompts: list[str], completions: list[str], answer: list[str], **_: Any) -> list[float]:
        return [verifier(Problem(f"p{i}", q, answer=a), Completion(c)).reward
                for i, (q, c, a) in enumerate(zip(prompts, completions, answer))]

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.times: list[float] = []
            self.logs: list[dict[str, float]] = []

        def on_step_begin(self, args, state, control, **kwargs):  # noqa: ANN001
            self.t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
            self.times.append(time.perf_counter() - self.t0)

        def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001
            if logs and "reward" in logs:
                self.logs.append(dict(logs))

    args = GRPOConfig(
        output_dir=str(save_to), max_steps=s.steps, per_device_train_batch_size=s.prompts * s.group_size,
        gradient_accumulation_steps=1, num_generations=s.group_size, max_completion_length=s.max_new_tokens,
        temperature=1.0, top_p=1.0, top_k=0, use_vllm=False, beta=0.0, num_iterations=1, epsilon=s.eps_low,
        epsilon_high=s.eps_high, loss_type="dapo", scale_rewards="group", learning_rate=s.lr, weight_decay=0.0,
        adam_beta2=0.99, max_grad_norm=1.0, lr_scheduler_type="constant_with_warmup", warmup_steps=s.warmup_steps,
        use_cpu=True, bf16=False, logging_steps=1, save_strategy="no", report_to="none", seed=s.seed,
        remove_unused_columns=False, disable_tqdm=True, dataloader_num_workers=0, log_completions=False,
    )
    timer = StepTimer()
    model = AutoModelForCausalLM.from_pretrained(s.model)
    tokenizer = AutoTokenizer.from_pretrained(s.model, padding_side="left")
    trainer = GRPOTrainer(model=model, reward_funcs=reward, args=args, train_dataset=dataset,
                          processing_class=tokenizer, callbacks=[timer])
    trainer.train()
    trainer.model.save_pretrained(save_to / "model")
    tokenizer.save_pretrained(save_to / "model")
    return [{"step": i + 1, "time": t, "reward": log["reward"],
             "tokens": log["completions/mean_length"] * s.prompts * s.group_size}
            for i, (t, log) in enumerate(zip(timer.times, timer.logs))]


def heldout_pass1(model: str, level: int) -> float:
    """Greedy pass@1 on 100 held-out problems, through rlvr's evaluation."""
    from rlvr.trainer import TrainConfig, Trainer

    cfg = TrainConfig(model=model, env_kwargs={"level": level}, device="cpu", warmstart_steps=0, eval_k=1,
                      eval_problems=100, out_dir="/tmp/rlvr-vs-trl-eval", progress=False)
    return Trainer(cfg).evaluate()["eval/pass@1"]


def side(name: str, s: Shared, out: Path) -> None:
    """Run one side in this process; write its records and peak RSS, and save the trained model."""
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(s.seed)
    start = time.perf_counter()
    records = (run_rlvr if name == "rlvr" else run_trl)(s, out / f"{name}_run")
    result = {"side": name, "records": records, "seconds": time.perf_counter() - start, "peak_rss_mb": peak_rss_mb()}
    (out / f"{name}.json").write_text(json.dumps(result))


def summary(result: dict[str, Any], skip: int) -> dict[str, float]:
    """Step-time statistics after `skip` warm-up steps, throughput and the reward at the start and end."""
    recs = result["records"]
    times = np.array([r["time"] for r in recs[skip:]])
    rewards = [r["reward"] for r in recs]
    k = max(1, len(rewards) // 4)
    return {"median_s": float(np.median(times)), "p25_s": float(np.percentile(times, 25)),
            "p75_s": float(np.percentile(times, 75)),
            "tokens_per_s": float(sum(r["tokens"] for r in recs[skip:]) / times.sum()),
            "peak_rss_mb": result["peak_rss_mb"], "reward_first": float(np.mean(rewards[:k])),
            "reward_last": float(np.mean(rewards[-k:])), "total_s": result["seconds"]}


def plot(results: dict[str, dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for name, result in results.items():
        steps = [r["step"] for r in result["records"]]
        ax1.plot(steps, [r["reward"] for r in result["records"]], marker="o", ms=3, label=name)
        ax2.plot(steps, [r["time"] for r in result["records"]], marker="o", ms=3, label=name)
    ax1.set(title="training reward (mean over the batch)", xlabel="step")
    ax2.set(title="step time (s)", xlabel="step")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=Shared.steps)
    parser.add_argument("--prompts", type=int, default=Shared.prompts)
    parser.add_argument("--group-size", type=int, default=Shared.group_size)
    parser.add_argument("--max-new-tokens", type=int, default=Shared.max_new_tokens)
    parser.add_argument("--model", default="", help="a save_pretrained directory (default: the ablation's "
                                                    "warm-started tiny model for Arithmetic level 2, seed 0)")
    parser.add_argument("--skip", type=int, default=2, help="first steps left out of the timing statistics")
    parser.add_argument("--out", type=Path, default=Path("bench/results/vs_trl"))
    parser.add_argument("--side", choices=["rlvr", "trl"], help=argparse.SUPPRESS)  # internal: run one side
    parser.add_argument("--shared", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.side:
        side(args.side, Shared(**json.loads(args.shared)), args.out)
        return {}
    try:
        import trl
    except ImportError:
        raise SystemExit("TRL is not installed in this interpreter: run with .venv-bench/bin/python "
                         "(python3 -m venv .venv-bench; pip install torch==2.13.0; pip install -e . trl)") from None
    model = args.model
    if not model:
        from ablation import INIT_DIR, Settings, starting_point  # bench/ is on sys.path

        model = str(starting_point("arithmetic", 0, Settings(), INIT_DIR).resolve())
    s = Shared(model=model, steps=args.steps, prompts=args.prompts, group_size=args.group_size,
               max_new_tokens=args.max_new_tokens)
    print(f"TRL {trl.__version__}; {s.steps} steps of B={s.prompts} x G={s.group_size}, "
          f"{s.max_new_tokens} new tokens, one thread, CPU\n")
    print("| setting | rlvr | TRL GRPOTrainer |\n|---|---|---|")
    for row in config_mapping(s):
        print("| " + " | ".join(row) + " |")
    results = {}
    for name in ("rlvr", "trl"):  # one process at a time, each measured on its own
        cmd = [sys.executable, __file__, "--side", name, "--shared", json.dumps(asdict(s)), "--out", str(args.out)]
        with (args.out / f"{name}.log").open("w") as log:
            subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT)
        results[name] = json.loads((args.out / f"{name}.json").read_text())
    stats = {name: summary(r, args.skip) for name, r in results.items()}
    for name in results:
        stats[name]["heldout_pass1_after"] = heldout_pass1(str(args.out / f"{name}_run" / "model"), s.level)
    start_pass1 = heldout_pass1(model, s.level)
    print("\n| metric | rlvr | TRL | rlvr / TRL |\n|---|---:|---:|---:|")
    for key, label in [("median_s", "step time, median (s)"), ("p25_s", "step time, 25th pct (s)"),
                       ("p75_s", "step time, 75th pct (s)"), ("tokens_per_s", "generated tokens/s (whole step)"),
                       ("peak_rss_mb", "peak RSS (MB)"), ("reward_first", "reward, first quarter of steps"),
                       ("reward_last", "reward, last quarter of steps"),
                       ("heldout_pass1_after", "held-out greedy pass@1 after training"),
                       ("total_s", "wall time incl. start-up (s)")]:
        a, b = stats["rlvr"][key], stats["trl"][key]
        print(f"| {label} | {a:.3g} | {b:.3g} | {a / b if b else float('nan'):.2f}x |")
    print(f"\nHeld-out greedy pass@1 before training: {start_pass1:.1%}")
    plot(results, args.out / "vs_trl.png")
    report = {"shared": asdict(s), "trl_version": trl.__version__, "stats": stats, "heldout_pass@1_start": start_pass1,
              "results": results}
    (args.out / "vs_trl.json").write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out / 'vs_trl.png'} and {args.out / 'vs_trl.json'}")
    return report


if __name__ == "__main__":
    main()
