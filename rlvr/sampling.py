"""The sampling distribution, defined once for the engine that samples from it and the learner that trains on it.

Logits are divided by the temperature T, then truncated: top-k keeps the k largest, then top-p (nucleus) keeps the
smallest set of the largest that holds probability >= p of what top-k left, as transformers' warpers do. The kept
set is `z >= threshold` per row, so ties at the threshold are all kept. The distribution sampled from is
softmax over the kept set, and `log pi(y)` is the log-probability of the sampled token under it.

The learner applies the same rule to its own logits, with one addition: the sampled token is always in its kept
set. Where engine and learner compute the same logits (the hf engine, same weights) the two kept sets are equal and
the addition changes nothing; where they differ (a bfloat16 engine, stale weights) a token the learner would have
cut gets a finite log-probability, renormalised over the learner's kept set plus that token, instead of -inf."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass
class Sampling:
    """How to sample: temperature 0 means greedy; top_k 0 and top_p 1 disable those filters. A turn also ends
    right after the first token that completes one of the `stop` strings (e.g. the end of a tool call); the string
    stays in the completion."""

    max_new_tokens: int = 64
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    stop: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0 or not 0 < self.top_p <= 1 or self.top_k < 0:
            raise ValueError(f"invalid sampling settings: {self}")
        if isinstance(self.stop, str) or not all(isinstance(s, str) and s for s in self.stop):
            raise ValueError(f"stop must be a tuple of non-empty strings, got {self.stop!r}")
        self.stop = tuple(self.stop)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    @property
    def truncates(self) -> bool:
        """Whether top-k or top-p cut the distribution (greedy decoding ignores both)."""
        return not self.greedy and (self.top_k > 0 or self.top_p < 1)

    @property
    def scale(self) -> float:
        """The divisor of the logits: the temperature, or 1 for greedy decoding (whose log-probs are the model's)."""
        return 1.0 if self.greedy else self.temperature


def kept_threshold(z: Tensor, sampling: Sampling) -> Tensor | None:
    """Per row of temperature-scaled logits z [..., V], the smallest logit that top-k then top-p keep; None when
    neither filter is on. Only the k largest are sorted when top-k is on; top-p alone sorts the whole row."""
    if not sampling.truncates:
        return None
    k = sampling.top_k if 0 < sampling.top_k < z.shape[-1] else 0
    # ascending values of what top-k keeps (the whole row without top-k)
    ascending = z.topk(k, dim=-1).values.flip(-1) if k else z.sort(dim=-1).values
    if sampling.top_p >= 1:
        return ascending[..., 0]
    # top-p: drop the smallest while their cumulative probability is <= 1 - p; the largest always stays
    dropped = ascending.softmax(-1).cumsum(-1) <= 1 - sampling.top_p
    dropped[..., -1] = False
    return ascending.gather(-1, dropped.sum(-1, keepdim=True)).squeeze(-1)


def truncate(z: Tensor, sampling: Sampling) -> Tensor:
    """A copy of z [..., V] with -inf outside the kept set of `sampling` (z itself when nothing is cut)."""
    threshold = kept_threshold(z, sampling)
    return z if threshold is None else drop_below(z.clone(), threshold)


def drop_below(z: Tensor, threshold: Tensor, always_keep: Tensor | None = None) -> Tensor:
    """z [..., V] set to -inf in place where it is below its row's `threshold` [...], except at the token ids
    `always_keep` [...] (the learner's rule for the sampled token)."""
    drop = z < threshold.unsqueeze(-1)
    if always_keep is not None:
        drop.scatter_(-1, always_keep.unsqueeze(-1), False)
    return z.masked_fill_(drop, float("-inf"))


def sample(z: Tensor, sampling: Sampling) -> tuple[Tensor, Tensor]:
    """Draw one token per row of logits z [B, V] already divided by `sampling.scale`: (token ids [B], their
    log-probabilities [B] under the distribution drawn from, z_y - logsumexp(z) as the learner computes them).
    Greedy decoding takes the argmax, whose log-prob is reported under softmax(z). Sampling inverts the cumulative
    distribution (float64, so its rounding is far below any probability that matters): exact, and on a CPU an order
    of magnitude faster than torch.multinomial over a 151,936-token vocabulary."""
    if not sampling.greedy:
        z = truncate(z, sampling)
    lse = z.logsumexp(-1, keepdim=True)
    if sampling.greedy:
        tokens = z.argmax(-1)
    else:
        cdf = (z - lse).exp_().double().cumsum_(-1)
        u = torch.rand(len(z), 1, dtype=torch.float64, device=z.device) * cdf[:, -1:]
        tokens = torch.searchsorted(cdf, u, right=True).squeeze(-1).clamp_(max=z.shape[-1] - 1)
    return tokens, (z.gather(-1, tokens.unsqueeze(-1)) - lse).squeeze(-1)
