"""Peak memory and time of one learner update on a 151,936-token vocabulary: rlvr's chunked LM head against rlvr's
previous full-logits path and TRL's GRPOTrainer loss paths, each configuration in its own process.

The model is Qwen2-shaped (Qwen2.5's vocabulary and tied embeddings, hidden 896 as in Qwen2.5-0.5B, depth reduced
so that it runs on 2 cores), built locally with a word-level tokenizer of that size and saved once; every side
loads the same float32 weights and computes the same loss on the same batch (DAPO's token-mean clipped surrogate,
eps 0.2 / 0.28, no KL, old log-probs = the forward's own, detached), with entropies, in the same micro-batches,
then backward. Loss and gradients are compared with rlvr's previous path (the full [N, T, V] computation).

sides:
  rlvr           rlvr now: completion positions only, the LM head in token chunks (rlvr/lm_head.py)
  rlvr-full      rlvr's previous path: [N, P + T, V] logits, log_softmax, gather
  trl            TRL's GRPOTrainer._compute_loss as installed (TRL >= 1.1x: its fused, tiled LM head)
  trl-logits     TRL's logits_to_keep path: [N, T, V] logits, selective_log_softmax, entropy_from_logits
The TRL sides need an interpreter with TRL (--trl-python, default .venv-bench/bin/python).

Also one whole `rlvr train` step (generate + verify + update) of the same vocabulary at hidden 128, 2 layers:
8 prompts x 8 completions of up to 1,024 tokens, its peak RSS and time.

    python bench/memory.py [--lengths 256 1024 4096] [--hidden 896] [--layers 2] [--out bench/results/memory]
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

BENCH = Path(__file__).resolve().parent
SIDES = ("rlvr", "rlvr-full", "trl", "trl-logits")


@dataclass
class Setup:
    """One measurement: the model directory, completion length, rows and rows per micro-batch."""

    model: str
    length: int
    rows: int = 8  # completions: two prompts x four
    micro: int = 8  # completions per forward/backward pass
    threads: int = 2
    seed: int = 0
    device: str = "cpu"
    dtype: str = "float32"  # rlvr sides: weights as loaded
    gradient_checkpointing: bool = False  # rlvr sides
    lora_r: int = 0  # rlvr sides: LoRA adapters of this rank (alpha = 2 r) on every linear layer but the head


def peak_mb(device: str) -> float:
    """Peak memory so far: the process's peak RSS on the CPU, the allocator's peak on a GPU."""
    if device.startswith("cuda"):
        import torch

        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_mb(device: str) -> float:
    if device.startswith("cuda"):
        import torch

        return torch.cuda.memory_allocated() / 2**20
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def make_batch(setup: Setup, tokenizer: Any) -> tuple[list[str], list[Any], Any]:
    """Two Arithmetic prompts with four completions each of exactly `length` random tokens, and advantages."""
    import numpy as np
    import torch

    import rlvr
    from rlvr.types import Completion

    env = rlvr.make("rlvr/Arithmetic-v0", level=2).unwrapped
    rng = np.random.default_rng(setup.seed)
    problems = [env.source.sample(rng) for _ in range(2)]
    prompts = [env.format_prompt(problems[i * 2 // setup.rows]) for i in range(setup.rows)]
    completions = [Completion("", rng.integers(3, len(tokenizer), setup.length).tolist()) for _ in prompts]
    rewards = torch.tensor(rng.integers(0, 2, setup.rows), dtype=torch.float32).reshape(2, -1)
    from rlvr import algorithms

    advantages = algorithms.make("dapo").advantages(rewards).reshape(-1)
    return prompts, completions, advantages


def rlvr_update(setup: Setup, full_logits: bool) -> dict[str, Any]:
    """rlvr's learner path on the batch: micro-batches, log-probs with entropies, the DAPO loss, backward."""
    import torch

    from rlvr import algorithms
    from rlvr.batch import build_batch, micro_batches, token_logprobs
    from rlvr.lora import apply_lora
    from rlvr.models import enable_activation_checkpointing, load_policy, resolve_dtype

    model, tokenizer = load_policy(setup.model, dtype=resolve_dtype(setup.dtype, setup.device), device=setup.device)
    model.train()
    if setup.gradient_checkpointing:
        enable_activation_checkpointing(model)
    if setup.lora_r:
        model = apply_lora(model, {"r": setup.lora_r, "alpha": 2 * setup.lora_r, "target_modules": "all-linear"})
    prompts, completions, advantages = make_batch(setup, tokenizer)
    batch = build_batch(tokenizer, prompts, completions)
    advantages = advantages.to(setup.device)
    algo = algorithms.make("dapo", dynamic_sampling=False)
    mask = batch.completion_mask
    before = current_mb(setup.device)
    t0 = time.perf_counter()
    loss_total = 0.0
    for j in micro_batches(batch, torch.arange(len(batch)), max_rows=setup.micro):
        sub = batch.select(j)
        sub = type(sub)(*(t.to(setup.device) for t in (sub.input_ids, sub.attention_mask, sub.position_ids,
                                                        sub.completion_mask)), sub.prompt_width)
        logp, _ = (full_logits_logprobs if full_logits else token_logprobs)(model, sub, with_entropy=True)
        loss, _ = algo.loss(logp, logp.detach(), None, advantages[j.to(setup.device)], sub.completion_mask,
                            num_tokens=float(mask.sum()), num_seqs=float(len(batch)))
        loss.backward()
        loss_total += float(loss)
    return finish(model, setup.device, loss_total, time.perf_counter() - t0, before)


def full_logits_logprobs(model: Any, batch: Any, with_entropy: bool = False) -> tuple[Any, Any]:
    """rlvr's token_logprobs before the chunked head: the model's [N, P + T, V] logits, then log_softmax."""
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                   position_ids=batch.position_ids).logits[:, batch.prompt_width - 1:-1]
    logprobs = logits.float().log_softmax(-1)
    targets = batch.input_ids[:, batch.prompt_width:]
    mask = batch.completion_mask
    logp = logprobs.gather(-1, targets.unsqueeze(-1)).squeeze(-1) * mask
    entropy = None
    if with_entropy:
        import torch

        with torch.no_grad():
            entropy = -(logprobs.exp() * logprobs).sum(-1) * mask
    return logp, entropy


def trl_update(setup: Setup, fused: bool) -> dict[str, Any]:
    """TRL's GRPOTrainer on the batch: `_compute_loss` per micro-batch (fused), or the logits_to_keep path."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer
    from trl.trainer.utils import entropy_from_logits, selective_log_softmax

    tokenizer = AutoTokenizer.from_pretrained(setup.model, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(setup.model)
    model.train()
    prompts, completions, advantages = make_batch(setup, tokenizer)
    args = GRPOConfig(output_dir="/tmp/rlvr-bench-memory-trl", per_device_train_batch_size=setup.micro,
                      gradient_accumulation_steps=1, num_generations=2, max_completion_length=setup.length,
                      beta=0.0, epsilon=0.2, epsilon_high=0.28, loss_type="dapo", use_cpu=True, bf16=False,
                      report_to="none", save_strategy="no", remove_unused_columns=False, disable_tqdm=True)
    trainer = GRPOTrainer(model=model, reward_funcs=lambda completions, **_: [0.0] * len(completions), args=args,
                          train_dataset=Dataset.from_list([{"prompt": p} for p in prompts]),
                          processing_class=tokenizer)
    trainer.current_gradient_accumulation_steps = 1  # set by Trainer.train, which this calls around
    enc = tokenizer(prompts, return_tensors="pt", padding=True)
    completion_ids = torch.tensor([c.token_ids for c in completions])
    completion_mask = torch.ones_like(completion_ids)
    num_items = completion_mask.sum()
    before = current_mb(setup.device)
    t0 = time.perf_counter()
    loss_total = 0.0
    for s in range(0, setup.rows, setup.micro):
        rows = slice(s, s + setup.micro)
        inputs = {"prompt_ids": enc["input_ids"][rows], "prompt_mask": enc["attention_mask"][rows],
                  "completion_ids": completion_ids[rows], "completion_mask": completion_mask[rows],
                  "advantages": advantages[rows], "num_items_in_batch": num_items}
        if fused:
            loss = trainer._compute_loss(trainer.model, inputs)
        else:  # GRPOTrainer's computation before the fused head, with TRL's own helpers
            ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], 1)
            attention = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], 1)
            keep = completion_ids.shape[1]
            logits = model(input_ids=ids, attention_mask=attention, logits_to_keep=keep + 1).logits[:, :-1][:, -keep:]
            logp = selective_log_softmax(logits, inputs["completion_ids"])
            with torch.no_grad():
                entropy_from_logits(logits)
            ratio = torch.exp(logp - logp.detach())
            A = inputs["advantages"].unsqueeze(1)
            per_token = -torch.min(ratio * A, ratio.clamp(0.8, 1.28) * A)
            loss = (per_token * inputs["completion_mask"]).sum() / num_items
        loss.backward()
        loss_total += float(loss)
    return finish(model, setup.device, loss_total, time.perf_counter() - t0, before)


def finish(model: Any, device: str, loss: float, seconds: float, before: float) -> dict[str, Any]:
    """The measurement: peak memory (read first: what follows allocates), the update's rise over the memory in use
    before it, time, loss, and the gradient as each parameter's norm and its projection on a fixed random
    direction, computed a million elements at a time (to compare sides without storing the gradient)."""
    import torch

    peak = peak_mb(device)
    generator = torch.Generator().manual_seed(1)
    norms, projections = {}, {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        name = name.removeprefix("base_model.model.")
        grad = (p.grad if p.grad is not None else torch.zeros_like(p)).detach().flatten().cpu()
        norms[name] = float(grad.double().norm())
        projections[name] = sum(float(part.double() @ torch.randn(len(part), generator=generator, dtype=torch.float64))
                                for part in grad.split(1 << 20))
    return {"peak_rss_mb": peak, "rss_before_mb": before, "seconds": seconds, "loss": loss,
            "grad_norms": norms, "grad_projections": projections}


def whole_step(setup: Setup, out: Path) -> dict[str, Any]:
    """One `rlvr train` step of the saved model: 8 prompts x 8 completions, generate + verify + update."""
    import torch

    from rlvr.trainer import TrainConfig, Trainer

    # one generation round (a random model solves nothing, so dynamic sampling would draw ten)
    cfg = TrainConfig(model=setup.model, algo_kwargs={"dynamic_sampling": False}, steps=1, num_prompts=8,
                      group_size=8, max_new_tokens=setup.length, eval_every=0, save_every=0,
                      out_dir=str(out / "step_run"), progress=False, report_to=[], threads=setup.threads,
                      device=setup.device, dtype=setup.dtype, gradient_checkpointing=setup.gradient_checkpointing,
                      lora={"r": setup.lora_r, "alpha": 2 * setup.lora_r} if setup.lora_r else {})
    trainer = Trainer(cfg)
    t0 = time.perf_counter()
    record = trainer.train_step()
    return {"peak_rss_mb": peak_mb(setup.device), "seconds": time.perf_counter() - t0, "length": record["length"],
            "loss_finite": bool(torch.isfinite(torch.tensor(record.get("pg_loss", 0.0)))),
            "logprob_mismatch": record.get("logprob_mismatch")}


def run_side(python: str, side: str, setup: Setup, out: Path, resume: bool = False) -> dict[str, Any] | str:
    """One side in its own process; its result, or why it has none. With `resume`, a result already written for
    the same setup is kept."""
    result = out / f"{side}-{setup.length}.json"
    if resume and result.exists() and json.loads(result.read_text()).get("setup") == asdict(setup):
        return json.loads(result.read_text())
    cmd = [python, __file__, "--side", side, "--setup", json.dumps(asdict(setup)), "--result", str(result)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    (out / f"{side}-{setup.length}.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        return f"failed (exit {proc.returncode}; see {side}-{setup.length}.log)"
    return json.loads(result.read_text())


def agreement(a: dict[str, Any], b: dict[str, Any]) -> float:
    """Largest relative difference between two sides' gradient norms and projections (per parameter)."""
    worst = 0.0
    for key in ("grad_norms", "grad_projections"):
        for name, value in b[key].items():
            other = a[key][name]
            worst = max(worst, abs(other - value) / max(abs(value), 1e-12))
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[256, 1024, 4096])
    parser.add_argument("--hidden", type=int, default=896)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--micro-tokens", type=int, default=8192,
                        help="completion tokens per micro-batch: rows per micro-batch = this / length (max 8)")
    parser.add_argument("--step-tokens", type=int, default=1024, help="max_new_tokens of the whole step (0: skip)")
    parser.add_argument("--sides", nargs="+", choices=SIDES, default=list(SIDES))
    parser.add_argument("--device", default="cpu", help="cpu or cuda (on a GPU, peak memory is the allocator's)")
    parser.add_argument("--dtype", default="float32", help="rlvr sides: weights as loaded")
    parser.add_argument("--gradient-checkpointing", action="store_true", help="rlvr sides")
    parser.add_argument("--lora-r", type=int, default=0, help="rlvr sides: LoRA rank (0: full fine-tuning)")
    parser.add_argument("--trl-python", default=str(BENCH.parent / ".venv-bench" / "bin" / "python"))
    parser.add_argument("--resume", action="store_true", help="keep the measurements already under --out")
    parser.add_argument("--out", type=Path, default=BENCH / "results" / "memory")
    parser.add_argument("--side", choices=[*SIDES, "step"], help=argparse.SUPPRESS)  # internal: one measurement
    parser.add_argument("--setup", help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        setup = Setup(**json.loads(args.setup))
        import torch

        torch.set_num_threads(setup.threads)
        torch.manual_seed(setup.seed)
        if args.side == "step":
            result = whole_step(setup, args.result.parent)
        elif args.side.startswith("rlvr"):
            result = rlvr_update(setup, full_logits=args.side == "rlvr-full")
        else:
            result = trl_update(setup, fused=args.side == "trl")
        args.result.write_text(json.dumps({**result, "setup": asdict(setup)}))
        return

    from rlvr.models import qwen2_shaped

    args.out.mkdir(parents=True, exist_ok=True)
    model_dir, step_dir = args.out / "model", args.out / "step_model"
    for path, hidden in ((model_dir, args.hidden), (step_dir, 128)):
        model, tokenizer = qwen2_shaped(hidden_size=hidden, num_layers=args.layers)
        model.save_pretrained(path)
        tokenizer.save_pretrained(path)
    params = sum(p.numel() for p in qwen2_shaped(hidden_size=args.hidden, num_layers=args.layers)[0].parameters())
    options = dict(device=args.device, dtype=args.dtype, gradient_checkpointing=args.gradient_checkpointing,
                   lora_r=args.lora_r)
    plain = options == dict(device="cpu", dtype="float32", gradient_checkpointing=False, lora_r=0)
    trl_python = args.trl_python if Path(args.trl_python).exists() else None
    memory = "peak RSS" if args.device == "cpu" else "peak allocated GPU memory"
    print(f"Qwen2-shaped model: vocabulary 151,936, hidden {args.hidden}, {args.layers} layers, {params / 1e6:.0f}M "
          f"parameters; {args.device}, {args.dtype}, gradient checkpointing {args.gradient_checkpointing}, LoRA "
          f"r={args.lora_r}; 8 completions (2 prompts x 4) per update; {memory}\n")
    results: dict[str, dict[int, Any]] = {side: {} for side in args.sides}
    for length in args.lengths:
        setup = Setup(str(model_dir), length, micro=max(1, min(8, args.micro_tokens // length)), **options)
        for side in args.sides:
            rlvr_side = side.startswith("rlvr")
            python = sys.executable if rlvr_side else trl_python
            if not (rlvr_side or plain):
                results[side][length] = "not run: the TRL sides run float32 on the CPU only"
            else:
                results[side][length] = (run_side(python, side, setup, args.out, args.resume) if python
                                         else "skipped: no TRL")
            print(f"{side} at {length}: {results[side][length] if isinstance(results[side][length], str) else 'ok'}",
                  file=sys.stderr, flush=True)
    print(f"| completion tokens | micro-batch | side | {memory} (MB) | update's rise (MB) | time (s) | "
          "rlvr / side (peak) | grads vs rlvr-full (max rel. diff) |\n|---:|---:|---|---:|---:|---:|---:|---:|")
    for length in args.lengths:
        ours, reference = results.get("rlvr", {}).get(length), results.get("rlvr-full", {}).get(length)
        for side in args.sides:
            r = results[side][length]
            micro = max(1, min(8, args.micro_tokens // length))
            if isinstance(r, str):
                print(f"| {length} | {micro} | {side} | {r} | | | | |")
                continue
            ratio = ours["peak_rss_mb"] / r["peak_rss_mb"] if isinstance(ours, dict) else float("nan")
            diff = agreement(r, reference) if isinstance(reference, dict) else float("nan")
            print(f"| {length} | {micro} | {side} | {r['peak_rss_mb']:,.0f} | {r['peak_rss_mb'] - r['rss_before_mb']:,.0f} "
                  f"| {r['seconds']:.1f} | {ratio:.2f}x | {diff:.1e} |")
    step = None
    if args.step_tokens:
        step = run_side(sys.executable, "step", Setup(str(step_dir), args.step_tokens, **options), args.out,
                        args.resume)
        if isinstance(step, dict):
            print(f"\n| whole `rlvr train` step (hidden 128, {args.layers} layers) | prompts x completions | max new "
                  f"tokens | mean length | {memory} (MB) | time (s) |\n|---|---:|---:|---:|---:|---:|\n"
                  f"| generate + verify + update | 8 x 8 | {args.step_tokens} | {step['length']:.0f} | "
                  f"{step['peak_rss_mb']:,.0f} | {step['seconds']:.0f} |")
        else:
            print(f"\nwhole step: {step}")
    (args.out / "memory.json").write_text(json.dumps({"hidden": args.hidden, "layers": args.layers, **options,
                                                      "results": results, "step": step}, indent=1))


if __name__ == "__main__":
    main()
