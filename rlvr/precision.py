"""The learner's arithmetic: mixed precision by `torch.autocast` (bfloat16, or float16 with a gradient scaler) over
float32 weights. The LM head and its log-softmax always run in float32 (`rlvr.lm_head`), outside the autocast."""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from rlvr.models import check_bfloat16

AUTOCAST = {"no": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class Precision:
    """`autocast()` around the learner's forward passes; `backward`, `unscale` and `step` through a gradient scaler,
    which only float16 needs (it skips a step whose gradients overflowed and lowers the scale)."""

    def __init__(self, mixed_precision: str, device: torch.device, param_dtype: torch.dtype) -> None:
        if mixed_precision not in AUTOCAST:
            raise ValueError(f"mixed_precision must be one of {', '.join(AUTOCAST)}, got {mixed_precision!r}")
        self.dtype = AUTOCAST[mixed_precision]
        if self.dtype is not None and param_dtype != torch.float32:
            raise ValueError(f"mixed_precision={mixed_precision!r} computes in {self.dtype} over float32 weights; "
                             f"the model was loaded in {param_dtype} (use dtype=float32, or mixed_precision=no)")
        if self.dtype == torch.bfloat16:
            check_bfloat16(device, "mixed_precision='bf16'", "use mixed_precision='fp16'")
        self.device_type = device.type
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.dtype == torch.float16)

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def backward(self, loss: torch.Tensor) -> None:
        self.scaler.scale(loss).backward()

    def unscale(self, optimizer: torch.optim.Optimizer) -> None:
        """Bring the gradients back to their true scale (before clipping them)."""
        if self.scaler.is_enabled():
            self.scaler.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        self.scaler.step(optimizer)
        self.scaler.update()

    def state_dict(self) -> dict[str, Any]:
        return self.scaler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            self.scaler.load_state_dict(state)
