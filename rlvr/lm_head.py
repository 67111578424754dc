"""The LM head without [N, T, V]: the log-probabilities (and entropies) of chosen tokens under the sampling
distribution, computed from the model's last hidden states a chunk of tokens at a time.

A forward pass inside `final_hidden_states(model)` skips the model's own head (it is handed an empty slice) and
records the hidden states that would have entered it. `sampled_logprobs` then runs the head over chunks of the
selected positions with a custom autograd function: each chunk's [chunk, V] logits live only while that chunk is
processed, in forward and again in backward (where they are recomputed), so peak memory is O(chunk x V) instead of
O(N x T x V). The head runs in float32 (float64 for a float64 model) whatever the model's dtype or autocast, so a
bfloat16 model's log-probs are not rounded to bfloat16 logits. Only token chunks are used, not vocabulary chunks:
top-k and top-p need each row's whole vocabulary at once.

Logits are softcap(scale * (h W^T + b)) (`OutputHead`), which covers the LM heads of transformers' causal LMs that
tie or untie embeddings (Llama, Qwen2, GPT-2, Mistral, ...), scale them (Cohere's `logit_scale`, Granite's
`logits_scaling`) or soft-cap them (Gemma 2's `final_logit_softcapping`); `check_output_head` compares a model's
own logits with this form and raises a clear error for a head it does not reproduce."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from rlvr.sampling import Sampling, drop_below, kept_threshold

# Default size of one chunk of logits, in elements: 2^24 floats (64 MB in float32), i.e. 110 tokens of a
# 151,936-token vocabulary: enough tokens per read of the head's weight for the matmul to be compute-bound, and
# measured fastest on a 2-core CPU at hidden 896 (forward + backward of 2,048 tokens: 15.5 s at 128 tokens per
# chunk, 17.5 s at 441, 17.4 s at 1,024, 22 s at 64).
CHUNK_ELEMENTS = 1 << 24


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The model inside a DDP wrapper (FSDP2 and peft models expose the transformers API themselves)."""
    return getattr(model, "module", model)


@dataclass(frozen=True)
class OutputHead:
    """logits = softcap(scale * (h W^T + b)), softcap(x) = cap * tanh(x / cap); then divided by the temperature."""

    scale: float = 1.0
    softcap: float | None = None

    @classmethod
    def of(cls, model: torch.nn.Module) -> OutputHead:
        config = unwrap(model).config
        scale = float(getattr(config, "logit_scale", None) or 1.0)  # Cohere multiplies the logits
        if getattr(config, "logits_scaling", None):  # Granite divides them
            scale /= float(config.logits_scaling)
        return cls(scale, getattr(config, "final_logit_softcapping", None))

    def logits(self, pre: Tensor, temperature: float) -> Tensor:
        """The sampling logits from the head's matmul output `pre` (in place)."""
        z = pre.mul_(self.scale) if self.scale != 1 else pre
        if self.softcap:
            z = z.div_(self.softcap).tanh_().mul_(self.softcap)
        return z.div_(temperature) if temperature != 1 else z

    def backward(self, dz: Tensor, z: Tensor, temperature: float) -> Tensor:
        """d loss / d pre from d loss / d z, given z = self.logits(pre, temperature) (both in place on dz)."""
        if self.softcap:  # d/dx cap tanh(x / cap) = 1 - tanh^2 = 1 - (z T / cap)^2 (dz is 0 where z is -inf)
            dz = dz.mul_(1 - (z * (temperature / self.softcap)).nan_to_num_(neginf=0.0).square_())
        factor = self.scale / temperature
        return dz.mul_(factor) if factor != 1 else dz


def head_weights(model: torch.nn.Module) -> tuple[Tensor, Tensor | None]:
    """The output embedding's weight [V, H] and bias [V] (or None)."""
    head = unwrap(model).get_output_embeddings()
    if not isinstance(head, torch.nn.Linear):
        raise TypeError(f"the model's output embedding is a {type(head).__name__}, not a plain linear layer: a LoRA "
                        "adapter on the LM head is not supported (leave lm_head out of lora.target_modules)")
    return head.weight, head.bias


@contextlib.contextmanager
def final_hidden_states(model: torch.nn.Module) -> Iterator[list[Tensor]]:
    """Within the block, forward passes skip the LM head: it receives an empty slice, and the hidden states it would
    have been given are appended to the yielded list, one [B, L, H] tensor per forward pass."""
    captured: list[Tensor] = []

    def skip_head(_module: torch.nn.Module, args: tuple) -> tuple:
        captured.append(args[0])
        return (args[0][..., :0, :], *args[1:])

    handle = unwrap(model).get_output_embeddings().register_forward_pre_hook(skip_head)
    try:
        yield captured
    finally:
        handle.remove()


def chunk_rows(vocab_size: int, chunk_tokens: int = 0) -> int:
    """Tokens per chunk: `chunk_tokens`, or (0) as many as fit CHUNK_ELEMENTS logits."""
    return chunk_tokens if chunk_tokens > 0 else max(1, CHUNK_ELEMENTS // vocab_size)


class _SampledLogprobs(torch.autograd.Function):
    """log pi(y_m | h_m) and the entropy of pi(. | h_m) for M hidden states, pi the sampling distribution; the
    logits of one chunk of rows at a time, recomputed in backward (the entropy carries no gradient)."""

    @staticmethod
    def forward(ctx, hidden: Tensor, weight: Tensor, bias: Tensor | None, targets: Tensor, head: OutputHead,
                sampling: Sampling, chunk: int, with_entropy: bool) -> tuple[Tensor, Tensor]:
        dtype = torch.promote_types(hidden.dtype, torch.float32)
        w, b = weight.to(dtype), None if bias is None else bias.to(dtype)
        logp = hidden.new_empty(len(hidden), dtype=dtype)
        entropy = hidden.new_zeros(len(hidden), dtype=dtype)
        thresholds = hidden.new_empty(len(hidden), dtype=dtype) if sampling.truncates else None
        for s in range(0, len(hidden), chunk):
            rows = slice(s, s + chunk)
            z = _logits(hidden[rows].to(dtype), w, b, head, sampling)
            y = targets[rows]
            if thresholds is not None:
                thresholds[rows] = kept_threshold(z, sampling)
                drop_below(z, thresholds[rows], y)
            lse = z.logsumexp(-1)
            logp[rows] = z.gather(-1, y.unsqueeze(-1)).squeeze(-1) - lse
            if with_entropy:  # H = lse - sum_j p_j z_j over the kept set
                p = (z - lse.unsqueeze(-1)).exp_()
                entropy[rows] = lse - (p * z.nan_to_num_(neginf=0.0)).sum(-1)
        ctx.save_for_backward(hidden, weight, bias, targets, thresholds)
        ctx.config = (head, sampling, chunk)
        ctx.mark_non_differentiable(entropy)
        return logp, entropy

    @staticmethod
    def backward(ctx, grad_logp: Tensor, _grad_entropy: Tensor) -> tuple[Tensor | None, ...]:
        hidden, weight, bias, targets, thresholds = ctx.saved_tensors
        head, sampling, chunk = ctx.config
        dtype = torch.promote_types(hidden.dtype, torch.float32)
        w, b = weight.to(dtype), None if bias is None else bias.to(dtype)
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        grad_h = torch.zeros_like(hidden, dtype=dtype) if need_h else None
        grad_w = torch.zeros_like(w) if need_w else None
        grad_b = torch.zeros_like(b) if need_b and b is not None else None
        for s in range(0, len(hidden), chunk):
            rows = slice(s, s + chunk)
            h, y, g = hidden[rows].to(dtype), targets[rows], grad_logp[rows].to(dtype)
            z = _logits(h, w, b, head, sampling)
            if thresholds is not None:
                drop_below(z, thresholds[rows], y)
            # d log p_y / d z_j = [j = y] - p_j (p_j = 0 outside the kept set)
            dz = z.softmax(-1).mul_(-g.unsqueeze(-1))
            dz.scatter_add_(-1, y.unsqueeze(-1), g.unsqueeze(-1))
            dpre = head.backward(dz, z, sampling.scale)
            if grad_h is not None:
                grad_h[rows] = dpre @ w
            if grad_w is not None:
                grad_w.addmm_(dpre.T, h)
            if grad_b is not None:
                grad_b += dpre.sum(0)
        return (None if grad_h is None else grad_h.to(hidden.dtype), None if grad_w is None else grad_w.to(weight.dtype),
                None if grad_b is None else grad_b.to(bias.dtype), None, None, None, None, None)


def _logits(h: Tensor, w: Tensor, b: Tensor | None, head: OutputHead, sampling: Sampling) -> Tensor:
    """Temperature-scaled logits [c, V] of hidden states [c, H], outside any autocast."""
    with torch.autocast(h.device.type, enabled=False):
        pre = h @ w.T if b is None else torch.addmm(b, h, w.T)
    return head.logits(pre, sampling.scale)


def sampled_logprobs(model: torch.nn.Module, hidden: Tensor, targets: Tensor, sampling: Sampling | None = None,
                     with_entropy: bool = False, chunk_tokens: int = 0) -> tuple[Tensor, Tensor]:
    """For hidden states [M, H] (from `final_hidden_states`) and the tokens [M] they predict: log pi(token) and the
    entropy of pi [M], pi the model's distribution under `sampling` (None: the plain softmax, T = 1). Differentiable
    in the hidden states and the head's weights; the entropy is a detached metric."""
    sampling = sampling or Sampling(temperature=1.0)
    weight, bias = head_weights(model)
    chunk = chunk_rows(weight.shape[0], chunk_tokens)
    return _SampledLogprobs.apply(hidden, weight, bias, targets, OutputHead.of(model), sampling, chunk, with_entropy)


@dataclass(frozen=True)
class FloatHead:
    """A model's LM head with its weight and bias cast once (to float32, or float64), for computing logits position
    after position (the engine's decode steps) without casting the [V, H] weight again each time."""

    weight: Tensor
    bias: Tensor | None
    form: OutputHead

    @classmethod
    def of(cls, model: torch.nn.Module, dtype: torch.dtype = torch.float32) -> FloatHead:
        weight, bias = head_weights(model)
        return cls(weight.to(dtype), None if bias is None else bias.to(dtype), OutputHead.of(model))

    def logits(self, hidden: Tensor, sampling: Sampling) -> Tensor:
        """The sampling logits [B, V] (temperature applied, not yet truncated) of hidden states [B, H]."""
        return _logits(hidden.to(self.weight.dtype), self.weight, self.bias, self.form, sampling)


@torch.no_grad()
def check_output_head(model: torch.nn.Module) -> None:
    """Raise if the model's own logits are not `OutputHead`'s form of its last hidden states (a head this module
    does not know, such as a final transformation other than scale and soft-cap)."""
    inner = unwrap(model)
    weight, _ = head_weights(inner)
    ids = torch.arange(3, device=weight.device).remainder(weight.shape[0]).unsqueeze(0)
    was_training = inner.training
    inner.eval()
    try:
        expected = inner(input_ids=ids).logits[0].to(torch.float64)
        with final_hidden_states(inner) as captured:
            inner(input_ids=ids)
        got = FloatHead.of(inner, torch.float64).logits(captured[0][0], Sampling(temperature=1.0))
    finally:
        inner.train(was_training)
    tolerance = 1e-3 * (1 + expected.abs().max()) if weight.dtype == torch.float32 else 0.1 * (1 + expected.abs().max())
    if not torch.allclose(got, expected, rtol=0, atol=float(tolerance)):
        raise NotImplementedError(
            f"{type(inner).__name__}'s logits are not softcap(scale * (h W^T + b)) of its last hidden states "
            f"(largest difference {float((got - expected).abs().max()):.3g}): rlvr's chunked LM head does not know "
            "this model's output layer")
