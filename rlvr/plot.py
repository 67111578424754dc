"""`rlvr plot RUN_DIR [RUN_DIR ...]`: learning curves from runs' metrics.jsonl as PNG files, one per metric with
every run overlaid, and one dashboard figure of the main panels (an ablation read at a glance)."""

from __future__ import annotations

import json
from collections.abc import Sequence
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
    "tokens_per_s": "generated tokens per second",
    "episode/turns": "turns per episode",
    "episode/tool_calls": "tool calls per episode",
}
DASHBOARD = ("reward", "eval/pass@1", "length", "entropy", "clip_frac_high", "kl_ref", "tokens_per_s")


def load_metrics(run_dir: str | Path) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"no metrics.jsonl in {run_dir}: not a run directory")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run_labels(run_dirs: Sequence[str | Path]) -> list[str]:
    """Each run's legend label: its directory's name, or as much of its path as tells it from the others."""
    paths = [Path(d).resolve() for d in run_dirs]
    for depth in range(1, max(len(p.parts) for p in paths) + 1):
        labels = ["/".join(p.parts[-depth:]) for p in paths]
        if len(set(labels)) == len(labels):
            return labels
    return [str(p) for p in paths]


def plot_runs(run_dirs: Sequence[str | Path], out_dir: str | Path | None = None) -> list[Path]:
    """Write `<metric>.png` for each metric any run logged (the runs overlaid) and `dashboard.png` (the main
    panels) into `out_dir` (default: RUN_DIR/plots for one run); returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not run_dirs:
        raise ValueError("rlvr plot needs at least one run directory")
    runs = dict(zip(run_labels(run_dirs), (load_metrics(d) for d in run_dirs)))
    out = Path(out_dir) if out_dir is not None else Path(run_dirs[0]) / "plots"
    if out_dir is None and len(run_dirs) > 1:
        raise ValueError("comparing several runs: say where the figures go (--out DIR)")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for key, title in CURVES.items():
        fig, ax = plt.subplots(figsize=(5.5, 3.4))
        if draw(ax, runs, key, title):
            fig.tight_layout()
            path = out / (key.replace("/", "_").replace("@", "_at_") + ".png")
            fig.savefig(path, dpi=100)
            written.append(path)
        plt.close(fig)
    panels = [key for key in DASHBOARD if any(key in r for records in runs.values() for r in records)]
    if panels:
        columns = min(4, len(panels))
        rows = -(-len(panels) // columns)
        fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.1 * rows + 0.6), squeeze=False)
        for ax, key in zip(axes.flat, panels):
            draw(ax, runs, key, CURVES[key])
        for ax in list(axes.flat)[len(panels):]:
            ax.axis("off")
        handles, labels = axes.flat[0].get_legend_handles_labels()
        for ax in axes.flat:
            if ax.get_legend() is not None:
                ax.get_legend().remove()
        fig.legend(handles, labels, loc="upper center", ncol=min(len(labels), 4), frameon=False)
        fig.tight_layout(rect=(0, 0, 1, 1 - 0.5 / (3.1 * rows + 0.6)))
        path = out / "dashboard.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written


def draw(ax: object, runs: dict[str, list[dict]], key: str, title: str) -> bool:
    """One panel: `key` against the step for every run that logged it; False if none did."""
    drawn = False
    for label, records in runs.items():
        points = [(r["step"], r[key]) for r in records if key in r]
        if points:
            ax.plot(*zip(*points), marker="o" if len(points) < 30 else None, markersize=3, label=label)
            drawn = True
    ax.set(xlabel="step", title=title)
    ax.grid(alpha=0.3)
    if drawn and len(runs) > 1:
        ax.legend(fontsize=8)
    return drawn
