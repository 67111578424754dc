"""What papers report from n sampled answers per problem: the unbiased pass@k estimator (Chen et al. 2021, "Evaluating
Large Language Models Trained on Code"), pass^k (all k correct: tau-bench's reliability measure) and mean@n (the mean
accuracy of the samples, which is also the unbiased pass@1), each as a mean over problems with its standard error."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def pass_at_k(n: int, c: int, k: int) -> float:
    """P(at least one of k answers drawn without replacement from n, of which c are correct, is correct)
    = 1 - C(n - c, k) / C(n, k), as the product 1 - prod_{i = n-c+1}^{n} (1 - k / i) (no large binomials)."""
    check_counts(n, c, k)
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def pass_hat_k(n: int, c: int, k: int) -> float:
    """pass^k: P(all k answers drawn without replacement from n, of which c are correct, are correct)
    = C(c, k) / C(n, k) = prod_{i < k} (c - i) / (n - i)."""
    check_counts(n, c, k)
    if c < k:
        return 0.0
    i = np.arange(k)
    return float(np.prod((c - i) / (n - i)))


def check_counts(n: int, c: int, k: int) -> None:
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")


def mean_and_se(values: Sequence[float]) -> tuple[float, float]:
    """The mean over problems and its standard error, std / sqrt(P) with the sample std (0 for one problem)."""
    x = np.asarray(values, dtype=np.float64)
    se = float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else 0.0
    return float(x.mean()), se


def sampled_metrics(correct: Sequence[Sequence[bool]], ks: Sequence[int]) -> dict[str, float]:
    """From each problem's n sampled verdicts (n >= every k): `mean@n`, and for each k > 1 `pass@k` and `pass^k`,
    each with `<name>_se`, its standard error over problems."""
    counts = [(len(row), int(sum(row))) for row in correct]
    n = min(m for m, _ in counts)
    if n != max(m for m, _ in counts):
        raise ValueError(f"every problem needs the same number of samples, got {sorted({m for m, _ in counts})}")
    too_many = [k for k in ks if k > n]
    if too_many:
        raise ValueError(f"pass@k needs n >= k samples per problem: k={too_many} with n={n}")
    out: dict[str, float] = {}
    out[f"mean@{n}"], out[f"mean@{n}_se"] = mean_and_se([c / m for m, c in counts])
    for k in sorted(set(ks) - {1}):
        out[f"pass@{k}"], out[f"pass@{k}_se"] = mean_and_se([pass_at_k(m, c, k) for m, c in counts])
        out[f"pass^{k}"], out[f"pass^{k}_se"] = mean_and_se([pass_hat_k(m, c, k) for m, c in counts])
    return out
