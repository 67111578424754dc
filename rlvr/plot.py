"""`rlvr plot RUN_DIR`: learning curves from a run's metrics.jsonl as PNG files, one per metric."""

from __future__ import annotations

import json
from pathlib import Path

CURVES = {
    "reward": "mean reward",
    "accuracy": "training accuracy",
    "eval/pass@1": "held-out pass@1 (greedy)",
    "length": "completion length (tokens)",
    "clip_frac_high": "clip fraction (high)",
    "clip_frac_low": "clip fraction (low)",
    "entropy": "policy entropy (nats/token)",
    "kl_ref": "KL to reference",
    "episode/turns": "turns per episode",
    "episode/tool_calls": "tool calls per episode",
}


def load_metrics(run_dir: str | Path) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"no metrics.jsonl in {run_dir}: not a run directory")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_run(run_dir: str | Path) -> list[Path]:
    """Write `plots/<metric>.png` for each metric the run logged; returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = load_metrics(run_dir)
    out_dir = Path(run_dir) / "plots"
    out_dir.mkdir(exist_ok=True)
    written = []
    for key, title in CURVES.items():
        points = [(r["step"], r[key]) for r in records if key in r]
        if not points:
            continue
        fig, ax = plt.subplots(figsize=(5, 3.2))
        ax.plot(*zip(*points), marker="o" if len(points) < 30 else None)
        ax.set(xlabel="step", title=title)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = out_dir / (key.replace("/", "_").replace("@", "_at_") + ".png")
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written
