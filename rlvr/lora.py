"""LoRA through peft (optional extra `rlvr[lora]`): the policy is the base model with low-rank adapters, the only
weights the optimizer updates. The reference policy is the same model with its adapters disabled (no second copy
of the weights), and engines that hold a model of their own (vLLM, Ray actors) receive the adapters merged into the
base weights, computed beside the learner's weights without touching them."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from typing import Any

import torch

from rlvr.registry import suggest

# TrainConfig's `lora.*` keys that are spelled differently in peft.LoraConfig
ALIASES = {"alpha": "lora_alpha", "dropout": "lora_dropout"}


def import_peft() -> Any:
    try:
        import peft
    except ImportError as exc:  # the extra is optional; say how to get it
        raise ImportError("LoRA needs peft: pip install 'rlvr[lora]'") from exc
    return peft


def is_peft_model(model: torch.nn.Module) -> bool:
    return hasattr(model, "peft_config") and hasattr(model, "get_base_model")


def lora_config(options: dict[str, Any]) -> Any:
    """A peft.LoraConfig for a causal LM from TrainConfig's `lora` dict (`alpha` and `dropout` may be spelled
    without peft's `lora_` prefix; `target_modules` may be a comma-separated string); an unknown key is an error
    naming the known ones."""
    peft = import_peft()
    known = {f.name for f in dataclasses.fields(peft.LoraConfig)}
    values = {ALIASES.get(k, k): v for k, v in options.items()}
    modules = values.get("target_modules")
    if isinstance(modules, str) and "," in modules:  # lora.target_modules=q_proj,v_proj from the command line
        values["target_modules"] = [m.strip() for m in modules.split(",") if m.strip()]
    unknown = sorted(set(values) - known)
    if unknown:
        hints = "".join(suggest(k, sorted(known | set(ALIASES))) for k in unknown)
        raise ValueError(f"unknown LoRA option(s) {unknown}; lora.* takes peft.LoraConfig's fields, e.g. r, alpha, "
                         f"dropout, target_modules.{hints}")
    return peft.LoraConfig(task_type="CAUSAL_LM", **values)


def apply_lora(model: torch.nn.Module, options: dict[str, Any]) -> torch.nn.Module:
    """`model` with fresh LoRA adapters (peft's get_peft_model); the base weights are frozen."""
    peft = import_peft()
    config = lora_config(options)
    try:
        return peft.get_peft_model(model, config)
    except ValueError as exc:
        if "not found in the base model" not in str(exc):
            raise
        names = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)})
        raise ValueError(f"lora.target_modules={config.target_modules!r} match no module of "
                         f"{type(model).__name__}; its linear layers are named {names}") from exc


def _lora_layers(model: torch.nn.Module) -> dict[str, Any]:
    """The LoRA-wrapped layers of a peft model, by their name in the base model."""
    from peft.tuners.lora import LoraLayer

    base = model.get_base_model()
    return {name: module for name, module in base.named_modules() if isinstance(module, LoraLayer)}


@torch.no_grad()
def base_state_dict(model: torch.nn.Module, merged: bool) -> dict[str, torch.Tensor]:
    """The base model's state dict under its own names (as `save_pretrained` of the plain model writes them):
    with `merged`, each adapted weight is W + (alpha / r) B A of the active adapter, new tensors beside the learner's
    (which stay as they are); without, the frozen base weights."""
    layers = _lora_layers(model)
    state = {}
    for key, value in model.get_base_model().state_dict().items():
        if ".lora_" in key:
            continue
        owner, _, leaf = key.replace(".base_layer.", ".").rpartition(".")
        layer = layers.get(owner)
        if merged and layer is not None and leaf == "weight":
            for adapter in layer.active_adapters:
                value = value + layer.get_delta_weight(adapter).to(value.dtype)
        state[f"{owner}.{leaf}" if owner else leaf] = value
    return state


@contextlib.contextmanager
def base_model_trainable(model: torch.nn.Module) -> Iterator[None]:
    """Within the block, a peft model is its base model: adapters disabled, base weights unfrozen (a warm-start
    trains them so); afterwards the adapters are back and the base weights frozen again."""
    frozen = [p for p in model.parameters() if not p.requires_grad]
    with model.disable_adapter():
        for p in frozen:
            p.requires_grad_(True)
        try:
            yield
        finally:
            for p in frozen:
                p.requires_grad_(False)
