"""Behaviour-policy correction: the engine that sampled a completion (the behaviour policy mu: other kernels, another
precision, or weights some updates old) is not the policy the loss's ratio starts from (pi_old, the learner's own
log-probs before the update). Each policy-gradient term is weighted by w ~ pi_old / mu, bounded so that a few
tokens cannot dominate the batch:

    token_truncate     w_t = min(rho_t, C)                        rho_t = pi_old(o_t) / mu(o_t)
    token_mask         w_t = rho_t * 1[rho_t <= C]
    sequence_truncate  w_t = min(prod_l rho_l, C)                  (one weight for every token of the sequence)
    sequence_mask      w_t = prod_l rho_l * 1[prod_l rho_l <= C]

and, in any mode (or alone, as pure rejection), IcePop's two-sided token mask: w_t = 0 where rho_t < mask_low or
rho_t > mask_high. The weights are constants of the loss (no gradient flows through them) and leave its
normalisers as they are: a masked token contributes zero, it is not removed from the token count."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from rlvr.algorithms.core import kl_estimate, masked_mean
from rlvr.config import check_is_correction

ISMode = Literal["token_truncate", "token_mask", "sequence_truncate", "sequence_mask"]

MAX_LOG_WEIGHT = 20.0  # log-weights are clamped before exp: a wild sequence ratio stays finite in float32


@dataclass(frozen=True)
class BehaviourCorrection:
    """How the loss weights each token for the mismatch between the sampling engine (mu) and the learner (pi_old)."""

    mode: ISMode | None = None  # None: no importance weight (rho = 1), the IcePop mask alone if set
    cap: float = 3.0  # C: the truncation level, or the level above which a weight is masked
    mask_low: float | None = None  # IcePop: tokens with rho_t below this get weight 0
    mask_high: float | None = None  # IcePop: tokens with rho_t above this get weight 0

    def __post_init__(self) -> None:
        check_is_correction(self.mode)
        if not self.cap > 0:
            raise ValueError(f"is_cap must be > 0, got {self.cap!r}")
        low, high = self.mask_low, self.mask_high
        if low is not None and not low >= 0 or high is not None and not high > 0:
            raise ValueError(f"is_mask_low must be >= 0 and is_mask_high > 0, got {low!r}, {high!r}")
        if low is not None and high is not None and not low < high:
            raise ValueError(f"is_mask_low ({low}) must be below is_mask_high ({high})")

    @property
    def active(self) -> bool:
        """Whether the loss is weighted at all (a mode, or an IcePop bound)."""
        return self.mode is not None or self.mask_low is not None or self.mask_high is not None

    def weights(self, old_logp: Tensor, behaviour_logp: Tensor, mask: Tensor) -> Tensor:
        """The weight w[N, T] of each token's policy-gradient term (0 on padding and environment tokens)."""
        return weigh(self, old_logp, behaviour_logp, mask)[0]


def weigh(cfg: BehaviourCorrection, old_logp: Tensor, behaviour_logp: Tensor,
          mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The weights w[N, T], and on the model tokens where the weight went over the cap and where IcePop's mask
    rejected the token (both bool [N, T])."""
    dtype = torch.promote_types(old_logp.dtype, torch.float32)
    m = mask.to(dtype)
    tokens = m > 0
    log_rho = (old_logp.detach().to(dtype) - behaviour_logp.detach().to(dtype)) * m  # log rho_t; 0 on padding
    rho = torch.exp(log_rho.clamp(-MAX_LOG_WEIGHT, MAX_LOG_WEIGHT))
    mode = cfg.mode or ""
    if mode.startswith("sequence"):  # prod_l rho_l, one weight for every token of the sequence
        raw = torch.exp(log_rho.sum(1, keepdim=True).clamp(-MAX_LOG_WEIGHT, MAX_LOG_WEIGHT)).expand_as(m)
    else:
        raw = rho if mode else torch.ones_like(rho)
    over = (raw > cfg.cap) & tokens if mode else torch.zeros_like(tokens)
    if mode.endswith("truncate"):
        raw = raw.clamp(max=cfg.cap)
    elif mode.endswith("mask"):
        raw = raw * ~over
    rejected = torch.zeros_like(tokens)  # IcePop: rho_t outside [mask_low, mask_high]
    if cfg.mask_low is not None:
        rejected |= rho < cfg.mask_low
    if cfg.mask_high is not None:
        rejected |= rho > cfg.mask_high
    rejected &= tokens
    return raw * m * ~rejected, over, rejected


def mismatch_k3(old_logp: Tensor, behaviour_logp: Tensor, mask: Tensor) -> float:
    """KL(mu || pi_old) per model token, by the k3 estimator on the tokens mu sampled."""
    dtype = torch.promote_types(old_logp.dtype, torch.float32)
    m = mask.to(dtype)
    return float(masked_mean(kl_estimate("k3", behaviour_logp.to(dtype) * m, old_logp.to(dtype) * m), m))


def behaviour_weights(cfg: BehaviourCorrection, old_logp: Tensor, behaviour_logp: Tensor,
                      mask: Tensor) -> tuple[Tensor, dict[str, float]]:
    """The weights w[N, T] and their metrics: mean/min/max of w over the model tokens, the fraction of weights
    truncated (of tokens, or of sequences in the sequence modes), the fraction of tokens masked, and the mismatch
    KL(mu || pi_old) by its k3 estimate."""
    w, over, rejected = weigh(cfg, old_logp, behaviour_logp, mask)
    tokens = mask > 0
    mode = cfg.mode or ""
    kept = w[tokens] if bool(tokens.any()) else w.new_ones(1)
    units, over_units = (tokens.any(1), over.any(1)) if mode.startswith("sequence") else (tokens, over)
    truncated = over_units.sum() / units.sum().clamp(min=1) if mode.endswith("truncate") else 0.0
    masked = rejected | over if mode.endswith("mask") else rejected
    return w, {"is/weight_mean": float(kept.mean()), "is/weight_min": float(kept.min()),
               "is/weight_max": float(kept.max()), "is/truncated_frac": float(truncated),
               "is/masked_frac": float(masked.sum() / tokens.sum().clamp(min=1)),
               "mismatch/k3": mismatch_k3(old_logp, behaviour_logp, mask)}
