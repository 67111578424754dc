"""The behaviour-policy correction (pi_old / mu weights: token or sequence, truncated or masked, IcePop's two-sided
mask) against float64 references written with plain loops from the definitions, in the shared loss of every
algorithm, and through the trainer: the identity when engine and learner agree, and real weights when they don't."""

from __future__ import annotations

import math
import random

import pytest
import torch

import rlvr.algorithms as algos
from rlvr.algorithms.correction import BehaviourCorrection, behaviour_weights
from rlvr.config import IS_MODES, TrainConfig
from rlvr.trainer import Trainer
from test_algorithms import PAPER, assert_close, flat, random_batch, ref_advantages, ref_loss, tensors
from test_trainer import easy_config

torch.set_num_threads(1)
MODES = [None, *IS_MODES]


# ---------------------------------------------------------------- float64 references with plain loops

def ref_weights(mode, cap, low, high, old, mu, mask):
    """w[i][t] straight from the definitions (0 off the mask)."""
    out = []
    for i in range(len(old)):
        toks = [t for t in range(len(old[i])) if mask[i][t]]
        seq = math.exp(sum(old[i][t] - mu[i][t] for t in toks))  # prod_l rho_l
        row = [0.0] * len(old[i])
        for t in toks:
            rho = math.exp(old[i][t] - mu[i][t])
            w = {None: 1.0, "token_truncate": min(rho, cap), "token_mask": rho if rho <= cap else 0.0,
                 "sequence_truncate": min(seq, cap), "sequence_mask": seq if seq <= cap else 0.0}[mode]
            if (low is not None and rho < low) or (high is not None and rho > high):
                w = 0.0
            row[t] = w
        out.append(row)
    return out


def behaviour_batch(seed: int, B: int = 3, G: int = 4, T: int = 6):
    """A padded batch plus engine log-probs mu that differ from old by per-row scales from 1e-3 to 1, so that some
    tokens and sequences stay under the cap and others go over it; one row is empty."""
    logp, old, ref, mask, rewards = random_batch(seed, B, G, T)
    rng = random.Random(seed + 100)
    mu = []
    for i, row in enumerate(old):
        scale = 10 ** rng.uniform(-3, 0)
        mu.append([x + scale * rng.gauss(0, 1.2) if mask[i][t] else rng.uniform(-60, 60) for t, x in enumerate(row)])
    mu[0][0], mu[0][1] = old[0][0] - 2.0, old[0][1] + 2.0  # row 0 is full: one rho_t of e^2, one of e^-2
    return logp, old, ref, mask, rewards, mu


# ---------------------------------------------------------------- the weights and their metrics

@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("bounds", [(None, None), (0.5, 2.0)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_weights_match_reference(mode, bounds, seed):
    _, old, _, mask, _, mu = behaviour_batch(seed)
    low, high = bounds
    expected = ref_weights(mode, 3.0, low, high, old, mu, mask)
    w, metrics = behaviour_weights(BehaviourCorrection(mode, 3.0, low, high), *tensors(old, mu, mask,
                                                                                      requires_grad_first=False))
    assert_close(w, expected)
    kept = [expected[i][t] for i in range(len(mask)) for t in range(len(mask[i])) if mask[i][t]]
    assert metrics["is/weight_mean"] == pytest.approx(sum(kept) / len(kept), rel=1e-9)
    assert (metrics["is/weight_min"], metrics["is/weight_max"]) == pytest.approx((min(kept), max(kept)), rel=1e-9)
    rhos = [math.exp(old[i][t] - mu[i][t]) for i in range(len(mask)) for t in range(len(mask[i])) if mask[i][t]]
    k3 = sum(r - math.log(r) - 1 for r in rhos) / len(rhos)  # KL(mu || pi_old), sampled from mu
    assert metrics["mismatch/k3"] == pytest.approx(k3, rel=1e-9)
    rows = [i for i in range(len(mask)) if sum(mask[i])]
    seqs = [math.exp(sum(old[i][t] - mu[i][t] for t in range(len(mask[i])) if mask[i][t])) for i in rows]
    units = seqs if mode and mode.startswith("sequence") else rhos
    truncated = sum(u > 3.0 for u in units) / len(units) if mode and mode.endswith("truncate") else 0.0
    assert metrics["is/truncated_frac"] == pytest.approx(truncated)
    over = [r > 3.0 for r in rhos] if mode == "token_mask" else [
        seqs[rows.index(i)] > 3.0 for i in range(len(mask)) for t in range(len(mask[i])) if mask[i][t]
    ] if mode == "sequence_mask" else [False] * len(rhos)
    rejected = [(low is not None and r < low) or (high is not None and r > high) for r in rhos]
    assert metrics["is/masked_frac"] == pytest.approx(sum(a or b for a, b in zip(over, rejected)) / len(rhos))
    if mode is not None and low is None:  # the batch exercises both sides of the cap
        assert 0 < sum(u > 3.0 for u in units) < len(units)


@pytest.mark.parametrize("mode", MODES)
def test_identical_engine_and_learner_give_weight_one_and_mask_nothing(mode):
    _, old, _, mask, _, _ = behaviour_batch(0)
    o, m = tensors(old, mask, requires_grad_first=False)
    w, metrics = behaviour_weights(BehaviourCorrection(mode, 3.0, 0.5, 2.0), o, o.clone(), m)
    assert torch.equal(w, m)
    assert metrics == {"is/weight_mean": 1.0, "is/weight_min": 1.0, "is/weight_max": 1.0, "is/truncated_frac": 0.0,
                       "is/masked_frac": 0.0, "mismatch/k3": 0.0}


def test_empty_completions_and_an_empty_batch_give_zero_weights_not_nan():
    w, metrics = behaviour_weights(BehaviourCorrection("sequence_mask"), torch.zeros(3, 4), torch.full((3, 4), -9.0),
                                   torch.zeros(3, 4))
    assert torch.equal(w, torch.zeros(3, 4)) and all(math.isfinite(v) for v in metrics.values())
    assert metrics["is/masked_frac"] == 0.0 and metrics["mismatch/k3"] == 0.0


def test_absurd_mismatch_stays_finite_in_float32():
    old, mu, mask = torch.zeros(2, 500), torch.full((2, 500), -5.0), torch.ones(2, 500)  # prod rho = e^2500
    for mode in IS_MODES:
        w, metrics = behaviour_weights(BehaviourCorrection(mode), old, mu, mask)
        assert torch.isfinite(w).all() and all(math.isfinite(v) for v in metrics.values())
        assert float(w.max()) == (3.0 if mode.endswith("truncate") else 0.0)


def test_the_weights_carry_no_gradient():
    old = torch.randn(2, 3, requires_grad=True)
    assert not BehaviourCorrection("token_truncate").weights(old, torch.zeros(2, 3), torch.ones(2, 3)).requires_grad


# ---------------------------------------------------------------- in the shared loss of every algorithm

@pytest.mark.parametrize("name", sorted(PAPER))
@pytest.mark.parametrize("mode", IS_MODES)
def test_weighted_loss_and_gradient_match_reference(name, mode):
    spec = PAPER[name]
    logp, old, ref, mask, rewards, mu = behaviour_batch(3)
    A = flat(ref_advantages(spec["adv"], rewards))
    weights = ref_weights(mode, 3.0, 0.5, 2.5, old, mu, mask)
    assert any(0 < w != 1 for w in flat(weights)) and any(w == 0 for w, m in zip(flat(weights), flat(mask)) if m)
    expected, expected_grad, *_ = ref_loss(spec, logp, old, ref, A, mask, weights=weights)
    lp, o, r, m, adv, b = tensors(logp, old, ref, mask, A, mu)
    w = BehaviourCorrection(mode, 3.0, 0.5, 2.5).weights(o, b, m)
    loss, _ = algos.make(name).loss(lp, o, r if spec["beta"] > 0 else None, adv, m, is_weights=w)
    loss.backward()
    assert_close(loss, expected)
    assert_close(lp.grad, expected_grad)


@pytest.mark.parametrize("name", sorted(PAPER))
def test_a_row_masked_whole_contributes_nothing_but_still_counts(name):
    """A sequence-masked row's policy-gradient terms are 0, and (as TRL's and verl's weights do) it stays in the
    normalisers: the loss equals the reference that keeps it with weight 0, not the one that drops it."""
    spec = PAPER[name]
    logp, old, ref, mask, rewards, mu = behaviour_batch(4)
    mu[0] = [x - 5.0 for x in old[0]]  # row 0 (full length): prod rho = e^(5 T), masked whole
    A = flat(ref_advantages(spec["adv"], rewards))
    weights = ref_weights("sequence_mask", 3.0, None, None, old, mu, mask)
    assert weights[0] == [0.0] * len(mask[0])
    expected, expected_grad, *_ = ref_loss(spec, logp, old, ref, A, mask, weights=weights)
    lp, o, r, m, adv, b = tensors(logp, old, ref, mask, A, mu)
    loss, metrics = algos.make(name).loss(lp, o, r if spec["beta"] > 0 else None, adv, m,
                                          is_weights=BehaviourCorrection("sequence_mask").weights(o, b, m))
    loss.backward()
    assert_close(loss, expected)
    assert_close(lp.grad, expected_grad)
    assert metrics["num_seqs"] == len(logp) - 1  # the empty row is absent, the masked one is not
    if spec["beta"] == 0:
        assert torch.all(lp.grad[0] == 0)


def test_bad_weights_and_settings_are_clear_errors():
    with pytest.raises(ValueError, match="is_correction='token'"):
        TrainConfig(is_correction="token")
    with pytest.raises(ValueError, match="is_cap"):
        BehaviourCorrection("token_truncate", cap=0.0)
    with pytest.raises(ValueError, match="below is_mask_high"):
        BehaviourCorrection(None, mask_low=2.0, mask_high=0.5)
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="is_weights has shape"):
        algos.make("grpo").loss(x, x, None, torch.zeros(2), torch.ones(2, 3), is_weights=torch.ones(2, 2))
    with pytest.raises(ValueError, match="is_weights must be >= 0"):
        algos.make("grpo").loss(x, x, None, torch.zeros(2), torch.ones(2, 3), is_weights=-torch.ones(2, 3))


# ---------------------------------------------------------------- through the trainer

class ShiftedEngine:
    """A deliberately mismatched engine: the run's own, reporting each sampled token's log-prob moved by `shift`
    (mu = pi_old - shift, so rho_t = e^shift on every model token)."""

    def __init__(self, engine, shift: float) -> None:
        self.engine, self.shift = engine, shift

    def generate(self, prompts, n, sampling):
        groups = self.engine.generate(prompts, n, sampling)
        for group in groups:
            for c in group:
                c.logprobs = [lp - self.shift for lp in c.logprobs]
        return groups

    def sync_weights(self, model) -> None:
        self.engine.sync_weights(model)


def strip_correction_metrics(records):
    return [{k: v for k, v in r.items() if not k.startswith(("is/", "time/", "tokens_per_s"))} for r in records]


def test_with_identical_engine_and_learner_every_mode_is_the_run_without_correction(tmp_path):
    base = strip_correction_metrics(Trainer(easy_config(tmp_path / "none", steps=3)).train())
    for mode in IS_MODES:
        records = Trainer(easy_config(tmp_path / mode, steps=3, is_correction=mode, is_mask_low=0.5,
                                      is_mask_high=2.0)).train()
        assert all(r["is/weight_min"] == r["is/weight_max"] == 1.0 and r["is/masked_frac"] == 0.0
                   for r in records), mode
        assert strip_correction_metrics(records) == base, mode


def test_a_mismatched_engine_is_weighted_and_a_fully_masked_batch_leaves_the_policy_unchanged(tmp_path):
    trainer = Trainer(easy_config(tmp_path / "trunc", is_correction="token_truncate", is_cap=2.0))
    trainer.engine = ShiftedEngine(trainer.engine, 1.0)  # rho_t = e > is_cap on every token
    record = trainer.train_step()
    assert record["is/weight_min"] == record["is/weight_max"] == 2.0 and record["is/truncated_frac"] == 1.0
    assert record["mismatch/k3"] == pytest.approx(math.e - 2, rel=1e-4)

    trainer = Trainer(easy_config(tmp_path / "mask", is_correction="token_mask", is_cap=2.0))
    trainer.engine = ShiftedEngine(trainer.engine, 1.0)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    record = trainer.train_step()
    assert record["is/masked_frac"] == 1.0 and record["is/weight_max"] == 0.0
    assert all(torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())


def test_completions_without_engine_logprobs_cannot_be_corrected(tmp_path):
    trainer = Trainer(easy_config(tmp_path, is_correction="sequence_truncate"))
    groups, _ = trainer.collector.collect()
    groups[0].completions[1].logprobs = None
    with pytest.raises(ValueError, match="came without one per token"):
        trainer.update(groups)
