"""Policy models: a tiny character-level Llama built from a config in code (the CPU default, no hub needed), loading
of any causal LM by local path or hub id (`--model Qwen/Qwen2.5-0.5B-Instruct`) in a chosen dtype, and of a LoRA
adapter directory onto its base model."""

from __future__ import annotations

import json
import string
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import (AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast,
                          Qwen2Config, Qwen2ForCausalLM)

PAD, BOS, EOS = "<pad>", "<s>", "</s>"


def char_tokenizer(chars: str = string.printable) -> PreTrainedTokenizerFast:
    """A character-level tokenizer over `chars` (printable ASCII by default) with pad/bos/eos tokens."""
    vocab = {tok: i for i, tok in enumerate([PAD, BOS, EOS, *dict.fromkeys(chars)])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=PAD))
    backend.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    backend.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token=PAD, bos_token=BOS, eos_token=EOS,
                                   unk_token=PAD, padding_side="left")


@dataclass
class TinyConfig:
    """Size of the built-in tiny Llama: small enough to train on two CPU cores in minutes."""

    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    max_positions: int = 128


def tiny_model(tokenizer: PreTrainedTokenizerFast, cfg: TinyConfig = TinyConfig(), seed: int = 0) -> LlamaForCausalLM:
    """A freshly initialised Llama over `tokenizer`'s vocabulary."""
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=cfg.hidden_size, intermediate_size=4 * cfg.hidden_size,
        num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads, num_key_value_heads=cfg.num_heads,
        max_position_embeddings=cfg.max_positions, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


QWEN2_VOCAB = 151936  # Qwen2 / Qwen2.5's vocabulary size


def word_tokenizer(vocab_size: int = QWEN2_VOCAB) -> PreTrainedTokenizerFast:
    """A word-level tokenizer of a real model's vocabulary size, built locally: pad/bos/eos, the printable
    characters, every string of two to four digits (so numbers up to 9999 are one token), then filler words `w0`,
    `w1`, ... up to `vocab_size`. Text splits into runs of up to four digits and single other characters, so any
    printable text round-trips; the filler words are never produced by it, but a model can sample them."""
    digits = [f"{i:0{n}d}" for n in (2, 3, 4) for i in range(10**n)]
    vocab = list(dict.fromkeys([PAD, BOS, EOS, *string.printable, *digits]))
    if vocab_size < len(vocab):
        raise ValueError(f"a word tokenizer needs at least {len(vocab)} tokens, got vocab_size={vocab_size}")
    vocab += [f"w{i}" for i in range(vocab_size - len(vocab))]
    backend = Tokenizer(models.WordLevel(vocab={t: i for i, t in enumerate(vocab)}, unk_token=PAD))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"\d{1,4}|\D"), behavior="isolated")
    backend.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token=PAD, bos_token=BOS, eos_token=EOS,
                                   unk_token=PAD, padding_side="left")


def qwen2_shaped(hidden_size: int = 128, num_layers: int = 2, vocab_size: int = QWEN2_VOCAB, seed: int = 0,
                 ) -> tuple[Qwen2ForCausalLM, PreTrainedTokenizerFast]:
    """A freshly initialised Qwen2 with Qwen2.5's vocabulary, tied embeddings, 64-wide heads (2 key/value heads)
    and MLP ratio (4864 / 896), at a chosen width and depth: real memory at the LM head, tiny everywhere else.
    Hidden size 896 is Qwen2.5-0.5B's (which has 24 layers)."""
    tokenizer = word_tokenizer(vocab_size)
    heads = max(2, hidden_size // 64)
    config = Qwen2Config(
        vocab_size=vocab_size, hidden_size=hidden_size, intermediate_size=hidden_size * 4864 // 896,
        num_hidden_layers=num_layers, num_attention_heads=heads, num_key_value_heads=2, tie_word_embeddings=True,
        max_position_embeddings=32768, rope_theta=1e6, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    return Qwen2ForCausalLM(config), tokenizer


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_dtype(name: str, device: str | torch.device) -> torch.dtype:
    """The torch dtype called `name`, checked to run on `device` (a clear error where it cannot)."""
    if name not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {name!r}")
    dtype, device = DTYPES[name], torch.device(device)
    if dtype == torch.bfloat16:
        check_bfloat16(device, "dtype=bfloat16", "use dtype=float16 or float32")
    try:
        x = torch.ones(2, 2, dtype=dtype, device=device)
        (x @ x).sum().item()
    except RuntimeError as exc:
        raise ValueError(f"dtype={name} cannot run on {device}: {exc}") from exc
    return dtype


def check_bfloat16(device: torch.device, setting: str, instead: str) -> None:
    """A clear error for `setting` on a GPU without bfloat16 arithmetic (emulation does not count)."""
    if device.type == "cuda" and not torch.cuda.is_bf16_supported(including_emulation=False):
        raise ValueError(f"{setting}: {torch.cuda.get_device_name(device)} has no bfloat16 arithmetic; {instead}")


def load_tokenizer(name_or_path: str | Path) -> PreTrainedTokenizerFast:
    """A saved or hub tokenizer, padding on the left (generation needs it), with a pad token (EOS if it has none)."""
    tokenizer = AutoTokenizer.from_pretrained(name_or_path, padding_side="left")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_policy(name_or_path: str, dtype: torch.dtype = torch.float32,
                device: str | torch.device = "cpu") -> tuple[torch.nn.Module, PreTrainedTokenizerFast]:
    """Load a causal LM and its tokenizer from a local directory or a hub id; `"tiny"` builds the tiny model; a
    directory holding a LoRA adapter (`adapter_config.json`) loads its base model (a `base` directory beside it,
    as rlvr's checkpoints of the tiny model keep it, or the adapter's `base_model_name_or_path`) with the adapter.

    The tokenizer pads on the left (generation needs it) and always has a pad token."""
    if name_or_path == "tiny":
        tokenizer = char_tokenizer()
        return tiny_model(tokenizer).to(device=device, dtype=dtype), tokenizer
    local = Path(name_or_path)
    if (local / "adapter_config.json").exists():
        return load_adapter(local, dtype, device)
    if local.exists() and not (local / "config.json").exists():
        raise FileNotFoundError(f"{local} exists but has no config.json: not a saved model directory")
    tokenizer = load_tokenizer(name_or_path)
    model = AutoModelForCausalLM.from_pretrained(name_or_path, dtype=dtype).to(device)
    return model, tokenizer


def load_adapter(path: Path, dtype: torch.dtype, device: str | torch.device,
                 ) -> tuple[torch.nn.Module, PreTrainedTokenizerFast]:
    """A LoRA adapter directory on its base model, trainable (as a checkpoint resumes it)."""
    from rlvr.lora import import_peft

    saved_base = path.parent / "base"
    base_name = str(saved_base) if (saved_base / "config.json").exists() else \
        json.loads((path / "adapter_config.json").read_text())["base_model_name_or_path"]
    base, tokenizer = load_policy(base_name, dtype, device)
    if (path / "tokenizer_config.json").exists():
        tokenizer = load_tokenizer(path)
    model = import_peft().PeftModel.from_pretrained(base, path, is_trainable=True)
    return model, tokenizer


def save_policy(model: torch.nn.Module, tokenizer: PreTrainedTokenizerFast, path: Path, merged: bool = False,
                base_to: Path | None = None) -> None:
    """Write the policy as `load_policy` reads it: a model directory, or for a LoRA policy its adapter (with
    `base_to`, also the base weights there) or, `merged`, one plain model with the adapters merged in."""
    from rlvr.lora import base_state_dict, is_peft_model

    if is_peft_model(model):
        base = model.get_base_model()
        if merged:
            base.save_pretrained(path, state_dict=base_state_dict(model, merged=True))
        else:
            model.save_pretrained(path)
            if base_to is not None:
                base.save_pretrained(base_to, state_dict=base_state_dict(model, merged=False))
                tokenizer.save_pretrained(base_to)
    else:
        model.save_pretrained(path)
    tokenizer.save_pretrained(path)


def policy_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The weights an engine of its own loads: the model's state dict, with a LoRA policy's adapters merged in
    under the base model's names (the learner's weights are left as they are)."""
    from rlvr.lora import base_state_dict, is_peft_model

    return base_state_dict(model, merged=True) if is_peft_model(model) else model.state_dict()


def enable_activation_checkpointing(model: torch.nn.Module) -> None:
    """Recompute each decoder layer's activations in backward (torch's non-reentrant checkpoint)."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.x names it so
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def disable_dropout(model: torch.nn.Module) -> torch.nn.Module:
    """Zero every dropout of the model (modules and attention probabilities), so that a policy in training mode
    computes the same distribution its engine samples from."""
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
        if isinstance(getattr(module, "attention_dropout", None), float):
            module.attention_dropout = 0.0
    return model
