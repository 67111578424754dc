"""Group baselines that turn rewards[B, G] (B prompts, G completions each) into advantages[B, G]. A group whose
rewards are all equal, G = 1 included, carries no signal and gets advantages of exactly zero, never NaN."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


def check_rewards(rewards: Any) -> Tensor:
    """Rewards as a finite floating [B, G] tensor with G >= 1, or a ValueError saying what is wrong."""
    r = torch.as_tensor(rewards)
    if r.dim() != 2 or r.shape[1] == 0:
        raise ValueError(f"rewards must be a [B, G] tensor with G >= 1 (B prompts, G completions each), "
                         f"got shape {tuple(r.shape)}")
    if not r.is_floating_point():
        r = r.to(torch.get_default_dtype())
    if not bool(torch.isfinite(r).all()):
        raise ValueError("rewards contains NaN or inf")
    return r


def constant_groups(r: Tensor) -> Tensor:
    """bool[B]: the groups whose G rewards are all equal (std 0), always so for G = 1."""
    return r.amax(1) == r.amin(1) if r.numel() else r.new_zeros(r.shape[0], dtype=torch.bool)


def zero_constant(A: Tensor, r: Tensor) -> Tensor:
    """A with the rows of constant groups set to exactly 0 (their float round-off is not a signal)."""
    return torch.where(constant_groups(r)[:, None], torch.zeros_like(A), A)


def mean_baseline(rewards: Tensor) -> Tensor:
    """A_i = r_i - mean_j(r_j)."""
    r = check_rewards(rewards)
    return zero_constant(r - r.mean(1, keepdim=True), r)


def leave_one_out(rewards: Tensor) -> Tensor:
    """A_i = r_i - 1/(G-1) sum_{j != i} r_j; zero for G = 1."""
    r = check_rewards(rewards)
    G = r.shape[1]
    if G == 1:
        return torch.zeros_like(r)
    return zero_constant(r - (r.sum(1, keepdim=True) - r) / (G - 1), r)


def group_normalised(rewards: Tensor, eps: float) -> Tensor:
    """A_i = (r_i - mean(r)) / (std(r) + eps), with the unbiased (G - 1) std; zero for G = 1."""
    r = check_rewards(rewards)
    if r.shape[1] == 1:
        return torch.zeros_like(r)
    A = (r - r.mean(1, keepdim=True)) / (r.std(1, keepdim=True) + eps)
    return zero_constant(A, r)


def group_metrics(rewards: Tensor) -> dict[str, float]:
    """Batch statistics of rewards[B, G] for logging: reward mean/std and the fraction of zero-std groups
    (groups that give no gradient under any group baseline)."""
    r = check_rewards(rewards)
    if r.numel() == 0:
        return {"reward_mean": 0.0, "reward_std": 0.0, "zero_std_frac": 0.0}
    values = torch.stack([r.mean(), r.std(correction=0), constant_groups(r).to(r.dtype).mean()]).tolist()
    return dict(zip(["reward_mean", "reward_std", "zero_std_frac"], values))
