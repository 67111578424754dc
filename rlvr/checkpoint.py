"""Checkpoints: the policy (a LoRA policy's adapter), the reference policy's weights, and `state.pt` with the step,
the optimizer, scheduler and gradient-scaler states, every random stream and the config. A checkpoint is written
beside the previous one and swapped in, so a kill mid-save loses nothing."""

from __future__ import annotations

import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from rlvr.models import load_policy, save_policy


def write(directory: Path, policy: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, state: dict[str, Any],
          ref: dict[str, torch.Tensor] | None = None, keep_base: bool = False) -> None:
    """Write `directory` (model/, ref/ when `ref` is given, state.pt) next to the old one, then swap. With
    `keep_base`, a LoRA policy's base weights go in base/ (for a base that no --model can load again)."""
    tmp, old = directory.with_name(directory.name + ".tmp"), directory.with_name(directory.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    save_policy(policy, tokenizer, tmp / "model", base_to=tmp / "base" if keep_base else None)
    if ref is not None:
        policy.save_pretrained(tmp / "ref", state_dict=ref)
    torch.save(state, tmp / "state.pt")
    shutil.rmtree(old, ignore_errors=True)
    if directory.exists():
        directory.rename(old)
    tmp.rename(directory)
    shutil.rmtree(old, ignore_errors=True)


def read(directory: Path, dtype: torch.dtype, ref_class: type) -> dict[str, Any]:
    """state.pt, plus "model" and "ref" (None without one): the policy's and the reference's whole state dicts."""
    if not (directory / "state.pt").exists():
        raise FileNotFoundError(f"no checkpoint to resume from in {directory}")
    state = torch.load(directory / "state.pt", weights_only=False)
    state["model"] = load_policy(str(directory / "model"), dtype=dtype)[0].state_dict()
    ref = directory / "ref"
    state["ref"] = ref_class.from_pretrained(ref).state_dict() if ref.exists() else None
    return state


def random_states(data_rng: np.random.Generator) -> dict[str, Any]:
    """Every random stream a run draws from: its data generator, torch's, Python's and numpy's global ones, and
    the CUDA generators (sampling on a GPU draws from them)."""
    return {"data_rng": data_rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
            "python_rng": random.getstate(), "numpy_rng": np.random.get_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def restore_random_states(state: dict[str, Any], data_rng: np.random.Generator) -> None:
    """Continue the streams `random_states` saved."""
    data_rng.bit_generator.state = state["data_rng"]
    torch.set_rng_state(state["torch_rng"])
    random.setstate(state["python_rng"])
    np.random.set_state(state["numpy_rng"])
    if state.get("cuda_rng") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
