"""The one policy loss every algorithm configures: an importance ratio (per token, per sequence, or GSPO-token),
a PPO clipped surrogate (asymmetric bounds, optional dual clip) or CISPO's clipped stop-gradient IS weight, a
KL penalty to the reference policy, and one of four loss aggregations."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

Objective = Literal["clip", "cispo"]
Ratio = Literal["token", "sequence", "sequence_token"]
KL = Literal["k1", "k2", "k3"]
Aggregation = Literal["seq-mean-token-mean", "token-mean", "seq-mean-token-sum-norm", "seq-mean"]

OBJECTIVES = ("clip", "cispo")
RATIOS = ("token", "sequence", "sequence_token")
KLS = ("k1", "k2", "k3")
AGGREGATIONS = ("seq-mean-token-mean", "token-mean", "seq-mean-token-sum-norm", "seq-mean")

# log-ratios are clamped to +-MAX_LOG_RATIO before exp so that a wild ratio (> e^20) in float32 gives a finite
# loss and gradient instead of inf * 0 = NaN; it changes nothing for any ratio a clip range would keep.
MAX_LOG_RATIO = 20.0


class GenerationBudget(float):
    """A `norm_constant` that stands for the generation budget (Dr. GRPO's MAX_TOKENS): the trainer puts its
    `max_new_tokens` in its place (`fit_generation_budget`); on its own it is the number it was made with."""


MAX_TOKENS = GenerationBudget(1024.0)  # the paper's budget, until a trainer says what its own is


@dataclass
class PolicyLoss:
    """Configuration of the shared surrogate; `loss()` evaluates it on padded [N, T] log-probabilities."""

    objective: Objective = "clip"  # "clip": min(rho A, clip(rho) A); "cispo": sg(clip(rho)) A log pi
    ratio: Ratio = "token"  # rho per token, s_i per sequence, or GSPO-token's sg(s_i) pi / sg(pi)
    eps_low: float = 0.2  # lower clip bound is 1 - eps_low
    eps_high: float = 0.2  # upper clip bound is 1 + eps_high
    dual_clip: float | None = None  # c > 1: for A < 0 the objective is max(min(...), c A)
    beta: float = 0.0  # KL coefficient; the trainer computes reference log-probs only when beta > 0
    kl: KL = "k3"  # estimator of KL(pi_theta || pi_ref) per token
    aggregation: Aggregation = "seq-mean-token-mean"
    norm_constant: float = 1.0  # the constant divisor of "seq-mean-token-sum-norm" (MAX_TOKENS: the budget)

    def __post_init__(self) -> None:
        for name, value, allowed in [("objective", self.objective, OBJECTIVES), ("ratio", self.ratio, RATIOS),
                                     ("kl", self.kl, KLS), ("aggregation", self.aggregation, AGGREGATIONS)]:
            if value not in allowed:
                raise ValueError(f"{type(self).__name__}: {name}={value!r} is not one of {', '.join(allowed)}")
        for name in ("eps_low", "eps_high", "beta"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{type(self).__name__}: {name} must be >= 0, got {getattr(self, name)!r}")
        if not self.norm_constant > 0:
            raise ValueError(f"{type(self).__name__}: norm_constant must be > 0, got {self.norm_constant!r}")
        if (self.ratio == "sequence") != (self.aggregation == "seq-mean"):
            raise ValueError(f"{type(self).__name__}: ratio='sequence' goes with aggregation='seq-mean' (one term "
                             f"per sequence) and only with it; got ratio={self.ratio!r}, "
                             f"aggregation={self.aggregation!r}")
        if self.objective == "cispo" and (self.ratio != "token" or self.dual_clip is not None):
            raise ValueError(f"{type(self).__name__}: objective='cispo' takes a per-token ratio and no dual_clip")
        if self.dual_clip is not None and not self.dual_clip > 1:
            raise ValueError(f"{type(self).__name__}: dual_clip must be > 1, got {self.dual_clip!r}")

    def loss(self, logp: Tensor, old_logp: Tensor, ref_logp: Tensor | None, advantages: Tensor, mask: Tensor, *,
             num_tokens: float | None = None, num_seqs: float | None = None,
             is_weights: Tensor | None = None) -> tuple[Tensor, dict[str, float]]:
        """The scalar loss to minimise and its metrics; see `policy_loss`."""
        return policy_loss(self, logp, old_logp, ref_logp, advantages, mask, num_tokens=num_tokens,
                           num_seqs=num_seqs, is_weights=is_weights)


def check_inputs(logp: Tensor, old_logp: Tensor, ref_logp: Tensor | None, advantages: Tensor, mask: Tensor,
                 is_weights: Tensor | None = None) -> None:
    """Raise a ValueError naming the tensor whose shape is wrong or that holds NaN/inf, a non-0/1 mask or a
    negative weight."""
    tensors = {"logp": logp, "old_logp": old_logp, "ref_logp": ref_logp, "advantages": advantages, "mask": mask,
               "is_weights": is_weights}
    for name, t in tensors.items():
        if t is not None and not isinstance(t, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if logp.dim() != 2:
        raise ValueError(f"logp must be a padded [N, T] tensor, got shape {tuple(logp.shape)}")
    for name in ("old_logp", "ref_logp", "mask", "is_weights"):
        t = tensors[name]
        if t is not None and t.shape != logp.shape:
            raise ValueError(f"{name} has shape {tuple(t.shape)} but logp has {tuple(logp.shape)}")
    if advantages.shape != logp.shape[:1]:
        raise ValueError(f"advantages must have shape ({logp.shape[0]},), one per completion row of logp, "
                         f"got {tuple(advantages.shape)}")
    for name, t in tensors.items():
        if t is not None and not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name} contains NaN or inf")
    if not bool(((mask == 0) | (mask == 1)).all()):
        raise ValueError("mask must hold only 0 and 1 (1 on completion tokens, 0 on padding)")
    if is_weights is not None and not bool((is_weights >= 0).all()):
        raise ValueError("is_weights must be >= 0 (importance weights of the behaviour correction)")


def kl_estimate(kind: KL, logp: Tensor, ref_logp: Tensor) -> Tensor:
    """Per-token estimate of KL(pi_theta || pi_ref) from samples of pi_theta: k1 = log(pi/pi_ref),
    k2 = (log(pi/pi_ref))^2 / 2, k3 = pi_ref/pi - log(pi_ref/pi) - 1 (unbiased and >= 0)."""
    log_r = ref_logp - logp  # log(pi_ref / pi_theta)
    if kind == "k1":
        return -log_r
    if kind == "k2":
        return 0.5 * log_r**2
    log_r = log_r.clamp(-MAX_LOG_RATIO, MAX_LOG_RATIO)
    return torch.exp(log_r) - log_r - 1


def aggregate(x: Tensor, mask: Tensor, how: Aggregation, num_tokens: Tensor | float, num_seqs: Tensor | float,
              norm_constant: float) -> Tensor:
    """Reduce per-token values x[N, T] (or per-sequence values x[N] for "seq-mean") to the batch loss."""
    if how == "seq-mean":  # 1/G sum_i x_i over sequences with at least one token
        return (x * (mask.sum(1) > 0)).sum() / num_seqs
    masked = x * mask
    if how == "token-mean":  # 1/sum_i|o_i| sum_i sum_l x_i^l
        return masked.sum() / num_tokens
    if how == "seq-mean-token-mean":  # 1/G sum_i 1/|o_i| sum_l x_i^l
        return (masked.sum(1) / mask.sum(1).clamp(min=1)).sum() / num_seqs
    return masked.sum() / (num_seqs * norm_constant)  # seq-mean-token-sum-norm: 1/(G C) sum_i sum_l x_i^l


def fit_generation_budget(cfg: PolicyLoss, max_new_tokens: int) -> None:
    """Set a token-sum normaliser left at the generation-budget default (`MAX_TOKENS`) to the run's budget: for
    Dr. GRPO, or any algorithm with the same aggregation and default. A constant given explicitly stays."""
    if cfg.aggregation == "seq-mean-token-sum-norm" and isinstance(cfg.norm_constant, GenerationBudget):
        cfg.norm_constant = float(max_new_tokens)


def policy_loss(cfg: PolicyLoss, logp: Tensor, old_logp: Tensor, ref_logp: Tensor | None, advantages: Tensor,
                mask: Tensor, *, num_tokens: float | None = None, num_seqs: float | None = None,
                is_weights: Tensor | None = None) -> tuple[Tensor, dict[str, float]]:
    """Loss = -aggregate(w * objective) + beta * aggregate(KL) on padded [N, T] tensors, advantages [N].

    `num_tokens` / `num_seqs` replace this call's own token / sequence counts as the divisors, so minibatches
    (or ranks) of one batch can each be normalised by the whole batch's counts and their losses summed.
    `is_weights` [N, T] are the behaviour correction's constant weights w (`rlvr.algorithms.correction`; 1 when
    None); a per-sequence objective takes the mean of its tokens' weights. Only rows with at least one mask token
    count as sequences; padded positions get exactly zero gradient."""
    check_inputs(logp, old_logp, ref_logp, advantages, mask, is_weights)
    if cfg.beta > 0 and ref_logp is None:
        raise ValueError(f"{type(cfg).__name__} has beta={cfg.beta} > 0, so ref_logp is required")
    for name, value in (("num_tokens", num_tokens), ("num_seqs", num_seqs)):
        if value is not None and not value > 0:
            raise ValueError(f"{name} must be > 0 when given, got {value!r}")

    dtype = torch.promote_types(logp.dtype, torch.float32)
    logp = logp.to(dtype)
    old_logp = old_logp.detach().to(dtype)
    ref_logp = None if ref_logp is None else ref_logp.detach().to(dtype)
    A = advantages.detach().to(dtype)
    m = mask.to(dtype)
    lengths = m.sum(1)  # |o_i|
    seqs = (lengths > 0).to(dtype)
    n_tok = m.sum().clamp(min=1) if num_tokens is None else num_tokens
    n_seq = seqs.sum().clamp(min=1) if num_seqs is None else num_seqs

    log_rho = (logp - old_logp) * m  # log rho_i^l; exactly 0, with zero gradient, on padding
    if cfg.ratio == "token":
        log_ratio, A_hat, units = log_rho.clamp(-MAX_LOG_RATIO, MAX_LOG_RATIO), A[:, None], m
    else:
        log_s = (log_rho.sum(1) / lengths.clamp(min=1)).clamp(-MAX_LOG_RATIO, MAX_LOG_RATIO)  # log s_i
        if cfg.ratio == "sequence":
            log_ratio, A_hat, units = log_s, A, seqs
        else:  # sequence_token: s_i^l = sg[s_i] * pi(o_i^l) / sg[pi(o_i^l)]
            log_ratio, A_hat, units = log_s.detach()[:, None] + log_rho - log_rho.detach(), A[:, None], m
    ratio = torch.exp(log_ratio)
    lo, hi = 1 - cfg.eps_low, 1 + cfg.eps_high
    clipped = ratio.clamp(lo, hi)

    if cfg.objective == "cispo":  # sg(clip(rho)) A log pi: every token keeps a gradient, its weight is bounded
        objective = clipped.detach() * A_hat * logp
        binds_low, binds_high = ratio < lo, ratio > hi
    else:  # min(rho A, clip(rho) A): the clip binds only where it removes the incentive for the sign of A
        objective = torch.minimum(ratio * A_hat, clipped * A_hat)
        binds_low, binds_high = (A_hat < 0) & (ratio < lo), (A_hat > 0) & (ratio > hi)
        if cfg.dual_clip is not None:
            objective = torch.where(A_hat < 0, torch.maximum(objective, cfg.dual_clip * A_hat), objective)
    if is_weights is not None:  # w_t = pi_old / mu, bounded: the behaviour correction of the PG term only
        w = is_weights.detach().to(dtype) * m
        objective = objective * (w.sum(1) / lengths.clamp(min=1) if cfg.ratio == "sequence" else w)

    agg = dict(mask=m, num_tokens=n_tok, num_seqs=n_seq, norm_constant=cfg.norm_constant)
    pg_loss = aggregate(-objective, how=cfg.aggregation, **agg)
    kl_how = "seq-mean-token-mean" if cfg.aggregation == "seq-mean" else cfg.aggregation
    kl_loss = logp.new_zeros(())
    if cfg.beta > 0:
        kl_loss = aggregate(kl_estimate(cfg.kl, logp, ref_logp), how=kl_how, **agg)
    loss = pg_loss + cfg.beta * kl_loss

    with torch.no_grad():
        metrics = {"pg_loss": pg_loss, "kl_loss": kl_loss}
        metrics.update(ratio_metrics(ratio, units, binds_low, binds_high))
        if cfg.dual_clip is not None:
            metrics["dual_clip_frac"] = masked_mean(((A_hat < 0) & (ratio > cfg.dual_clip)).to(dtype), units)
        metrics["kl_old"] = masked_mean(kl_estimate("k3", logp, old_logp), m)
        if ref_logp is not None:
            metrics["kl_ref"] = masked_mean(kl_estimate(cfg.kl, logp, ref_logp), m)
        metrics["adv_mean"] = A.mean() if A.numel() else A.new_zeros(())
        metrics["adv_std"] = A.std(correction=0) if A.numel() else A.new_zeros(())
        metrics["num_tokens"], metrics["num_seqs"] = m.sum(), seqs.sum()
        values = torch.stack([v.to(dtype).reshape(()) for v in metrics.values()]).tolist()
    return loss, dict(zip(metrics, values))


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean of x where mask is 1; 0 when the mask is empty."""
    return (x * mask).sum() / mask.sum().clamp(min=1)


def ratio_metrics(ratio: Tensor, units: Tensor, binds_low: Tensor, binds_high: Tensor) -> dict[str, Tensor]:
    """Clip fractions and ratio mean/min/max over the counted units (tokens, or sequences); ratio 1 when none."""
    kept = ratio.detach()[units > 0]
    if kept.numel() == 0:
        kept = ratio.new_ones(1)
    return {"clip_frac_low": masked_mean(binds_low.to(ratio.dtype), units),
            "clip_frac_high": masked_mean(binds_high.to(ratio.dtype), units),
            "ratio_mean": kept.mean(), "ratio_min": kept.min(), "ratio_max": kept.max()}
