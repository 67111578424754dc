"""Where a run's metric records go: one JSON line per record in `RUN_DIR/metrics.jsonl`, and TensorBoard events in
`RUN_DIR/tensorboard` when tensorboard is installed (optional)."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any


class MetricsSink:
    """Appends records (dicts with a "step") to the run's JSONL file and, if it can, to TensorBoard."""

    def __init__(self, run_dir: Path, tensorboard: bool = True) -> None:
        self.path = run_dir / "metrics.jsonl"
        self.logdir = run_dir / "tensorboard"
        self.tensorboard = tensorboard  # False once tensorboard turns out not to be installed
        self._writer: Any = None  # a SummaryWriter, opened with the first record

    def reset(self) -> None:
        """Start a fresh run: no records and no events from an earlier one."""
        self.path.unlink(missing_ok=True)
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
        if self._writer is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)):
                    self._writer.add_scalar(key, value, record["step"])
            self._writer.flush()

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

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
