"""The evaluation estimators against their closed forms (binomial coefficients in exact integers) and their
expectations (unbiasedness, summed exactly over the binomial distribution of the number correct), and the
trainer's held-out metrics built from them."""

import math

import numpy as np
import pytest

from rlvr.config import TrainConfig
from rlvr.evaluation import mean_and_se, pass_at_k, pass_hat_k, sampled_metrics
from rlvr.trainer import Trainer
from test_trainer import easy_config

CASES = [(n, c, k) for n in (1, 2, 5, 16, 100) for c in sorted({0, 1, n // 3, n - 1, n}) if 0 <= c <= n
         for k in sorted({1, 2, n // 2, n}) if 1 <= k <= n]


@pytest.mark.parametrize("n, c, k", CASES)
def test_pass_at_k_and_pass_hat_k_are_their_closed_forms(n, c, k):
    assert pass_at_k(n, c, k) == pytest.approx(1 - math.comb(n - c, k) / math.comb(n, k), abs=1e-12)
    assert pass_hat_k(n, c, k) == pytest.approx(math.comb(c, k) / math.comb(n, k), abs=1e-12)


@pytest.mark.parametrize("n, k", [(4, 1), (8, 4), (20, 5), (50, 50)])
@pytest.mark.parametrize("p", [0.0, 0.03, 0.5, 0.9, 1.0])
def test_the_estimators_are_unbiased(n, k, p):
    """E[pass@k] over C ~ Binomial(n, p) is 1 - (1 - p)^k, E[pass^k] is p^k: exactly, for every n >= k. (The plain
    estimate 'any of the n correct' is biased upward as n grows: checked to differ.)"""
    pmf = [math.comb(n, c) * p**c * (1 - p) ** (n - c) for c in range(n + 1)]
    assert sum(w * pass_at_k(n, c, k) for c, w in enumerate(pmf)) == pytest.approx(1 - (1 - p) ** k, abs=1e-12)
    assert sum(w * pass_hat_k(n, c, k) for c, w in enumerate(pmf)) == pytest.approx(p**k, abs=1e-12)
    if 0 < p < 1 and n > k:
        assert sum(w * (c > 0) for c, w in enumerate(pmf)) > 1 - (1 - p) ** k + 1e-6


def test_counts_out_of_range_are_errors():
    for n, c, k in [(4, 5, 1), (4, -1, 1), (4, 2, 5), (4, 2, 0)]:
        with pytest.raises(ValueError, match="need 0 <= c <= n and 1 <= k <= n"):
            pass_at_k(n, c, k)


def test_sampled_metrics_average_over_problems_with_standard_errors():
    correct = [[True, False, False, False], [True, True, True, False], [False] * 4]
    out = sampled_metrics(correct, [1, 2, 4])
    assert set(out) == {"mean@4", "mean@4_se", "pass@2", "pass@2_se", "pass^2", "pass^2_se", "pass@4", "pass@4_se",
                        "pass^4", "pass^4_se"}  # k = 1 is mean@n: the unbiased pass@1
    per_problem = [1 - math.comb(3, 2) / 6, 1 - 0 / 6, 0.0]  # pass@2 of 1, 3 and 0 correct out of 4
    assert out["pass@2"] == pytest.approx(np.mean(per_problem))
    assert out["pass@2_se"] == pytest.approx(np.std(per_problem, ddof=1) / np.sqrt(3))
    assert out["pass^2"] == pytest.approx(np.mean([0, 3 / 6, 0]))
    assert out["mean@4"] == pytest.approx(4 / 12) and out["pass@4"] == pytest.approx(2 / 3)
    assert mean_and_se([0.25]) == (0.25, 0.0)
    with pytest.raises(ValueError, match="n >= k samples per problem: k=\\[8\\] with n=4"):
        sampled_metrics(correct, [8])
    with pytest.raises(ValueError, match="the same number of samples"):
        sampled_metrics([[True], [True, False]], [1])


def test_eval_settings_are_checked():
    assert TrainConfig(eval_k=8).eval_k == [8]
    with pytest.raises(ValueError, match="eval_n >= k"):
        TrainConfig(eval_k=[2, 8], eval_n=4)
    with pytest.raises(ValueError, match="non-empty list of k >= 1"):
        TrainConfig(eval_k=[0])


def test_the_trainer_reports_greedy_pass_at_1_and_the_sampled_estimators(tmp_path):
    with Trainer(easy_config(tmp_path, eval_k=[2, 4], eval_n=6, eval_problems=8)) as trainer:
        out = trainer.evaluate()
        again = trainer.evaluate()
    assert out == again  # its own seeded stream
    assert {"eval/pass@1", "eval/pass@1_se", "eval/mean@6", "eval/pass@2", "eval/pass@4", "eval/pass^2",
            "eval/pass^4", "eval/pass@4_se"} <= set(out)
    assert out["eval/pass^4"] <= out["eval/pass^2"] <= out["eval/mean@6"] <= out["eval/pass@2"] <= out["eval/pass@4"]
    assert 0 < out["eval/mean@6"] < 1  # an untrained policy: some samples right, some wrong
