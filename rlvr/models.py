"""Policy models: a tiny character-level Llama built from a config in code (the CPU default, no hub needed), and
loading of any causal LM by local path or hub id (`--model Qwen/Qwen2.5-0.5B-Instruct`)."""

from __future__ import annotations

import string
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

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


def load_policy(name_or_path: str, dtype: torch.dtype = torch.float32,
                device: str | torch.device = "cpu") -> tuple[torch.nn.Module, PreTrainedTokenizerFast]:
    """Load a causal LM and its tokenizer from a local directory or a hub id; `"tiny"` builds the tiny model.

    The tokenizer pads on the left (generation needs it) and always has a pad token."""
    if name_or_path == "tiny":
        tokenizer = char_tokenizer()
        return tiny_model(tokenizer).to(device), tokenizer
    local = Path(name_or_path)
    if local.exists() and not (local / "config.json").exists():
        raise FileNotFoundError(f"{local} exists but has no config.json: not a saved model directory")
    tokenizer = AutoTokenizer.from_pretrained(name_or_path, padding_side="left")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(name_or_path, dtype=dtype).to(device)
    return model, tokenizer
