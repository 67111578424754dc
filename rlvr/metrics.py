"""Where a run's metric records go: one JSON line per record in `RUN_DIR/metrics.jsonl`, and to the trackers named in
`report_to`: TensorBoard events in `RUN_DIR/tensorboard` (when tensorboard is installed) and Weights & Biases (one
W&B run per run directory, continued on resume; `WANDB_MODE=offline` writes it under `RUN_DIR/wandb` with no
network)."""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rlvr.config import check_report_to

class MetricsSink:
    """Appends records (dicts with a "step") to the run's JSONL file and to the trackers of `report_to`: TensorBoard
    if it is installed, W&B (an ImportError naming the package if it is not: it was asked for by name). `config` is
    what a W&B run records as its configuration."""

    def __init__(self, run_dir: Path, report_to: Sequence[str] = ("tensorboard",),
                 config: dict[str, Any] | None = None) -> None:
        check_report_to(report_to)
        self.path = run_dir / "metrics.jsonl"
        self.logdir = run_dir / "tensorboard"
        self.wandb_id = run_dir / "wandb_id"  # the W&B run this directory logs to (a resume continues it)
        self.tensorboard = "tensorboard" in report_to  # False once tensorboard turns out not to be installed
        self.wandb = "wandb" in report_to
        self.config = config
        self._writer: Any = None  # a SummaryWriter, opened with the first record
        self._run: Any = None  # a wandb Run, likewise

    def reset(self) -> None:
        """Start a fresh run: no records and no events from an earlier one (and a W&B run of its own)."""
        self.path.unlink(missing_ok=True)
        self.wandb_id.unlink(missing_ok=True)
        shutil.rmtree(self.logdir, ignore_errors=True)

    def truncate(self, step: int) -> None:
        """Drop records logged after `step` (a resumed run's log then reads like an unbroken one; TensorBoard's
        are purged when the next writer opens at that step)."""
        if self.path.exists():
            lines = [ln for ln in self.path.read_text().splitlines() if json.loads(ln)["step"] <= step]
            self.path.write_text("".join(ln + "\n" for ln in lines))

    def write(self, record: dict[str, Any]) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        if self.tensorboard and self._writer is None:
            self._writer = self._open_writer(record["step"])
        scalars = {k: v for k, v in record.items() if k != "step" and isinstance(v, (int, float))}
        if self._writer is not None:
            for key, value in scalars.items():
                self._writer.add_scalar(key, value, record["step"])
            self._writer.flush()
        if self.wandb:
            if self._run is None:
                self._run = self._open_wandb()
            # a resumed run logs again the steps its killed predecessor logged after the checkpoint; W&B keeps the
            # first (steps only go up), which resume reproduces exactly
            self._run.log(scalars, step=record["step"])

    def _open_writer(self, step: int) -> Any:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is optional
            self.tensorboard = False
            return None
        # TensorBoard reads event files in name order; a name starts with its creation second and ends with a
        # per-process counter that sorts as text (.10 before .9), so a writer opened in the same second as the last
        # one (a resume within one process) could be read first: start in the next second
        seconds = [int(p.name.split(".")[3]) for p in self.logdir.glob("events.out.tfevents.*")]
        if seconds:
            time.sleep(max(0.0, max(seconds) + 1 - time.time()))
        return SummaryWriter(str(self.logdir), purge_step=step)

    def _open_wandb(self) -> Any:
        try:
            import wandb
        except ImportError as exc:
            raise ImportError("report_to=wandb needs Weights & Biases: pip install wandb") from exc
        if not self.wandb_id.exists():
            self.wandb_id.write_text(uuid.uuid4().hex[:12])
        return wandb.init(project=os.environ.get("WANDB_PROJECT", "rlvr"), name=self.path.parent.name,
                          id=self.wandb_id.read_text().strip(), resume="allow", dir=str(self.path.parent),
                          config=self.config)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._run is not None:
            self._run.finish()
            self._run = None
