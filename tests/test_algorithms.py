"""The algorithm zoo against float64 references written with plain loops straight from the papers' equations,
plus edge cases, the GRPO = REINFORCE and GSPO 1.2^|o| arguments, the registry, and the input guards."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import pytest
import torch

import rlvr.algorithms as algos
from rlvr.algorithms.core import MAX_TOKENS, fit_generation_budget
from rlvr.types import Completion, Group, Problem, Verdict

torch.set_num_threads(1)
INF = math.inf

# What each paper prescribes, written down independently of the implementation.
# adv: mean | loo | norm; objective: clip | cispo; ratio: token | sequence | sequence_token;
# agg: seq-token-mean (1/G sum_i 1/|o_i| sum_l), token-mean (1/sum|o_i| sum sum), sum-norm (1/(G C) sum sum),
# seq (1/G sum_i, one term per sequence).
PAPER = {
    "reinforce": dict(adv="mean", objective="clip", ratio="token", eps=(INF, INF), beta=0.0, agg="sum-norm", C=1.0),
    "rloo": dict(adv="loo", objective="clip", ratio="token", eps=(INF, INF), beta=0.0, agg="sum-norm", C=1.0),
    "grpo": dict(adv="norm", objective="clip", ratio="token", eps=(0.2, 0.2), beta=0.04, agg="seq-token-mean"),
    "dr_grpo": dict(adv="mean", objective="clip", ratio="token", eps=(0.2, 0.2), beta=0.0, agg="sum-norm", C=1024.0),
    "dapo": dict(adv="norm", objective="clip", ratio="token", eps=(0.2, 0.28), beta=0.0, agg="token-mean"),
    "gspo": dict(adv="norm", objective="clip", ratio="sequence", eps=(3e-4, 4e-4), beta=0.0, agg="seq"),
    "gspo_token": dict(adv="norm", objective="clip", ratio="sequence_token", eps=(3e-4, 4e-4), beta=0.0,
                       agg="seq-token-mean"),
    "cispo": dict(adv="norm", objective="cispo", ratio="token", eps=(1.0, 0.28), beta=0.0, agg="token-mean"),
}
AGG_NAMES = {"seq-token-mean": "seq-mean-token-mean", "token-mean": "token-mean",
             "sum-norm": "seq-mean-token-sum-norm", "seq": "seq-mean"}
STD_EPS = 1e-6


# ---------------------------------------------------------------- float64 references with plain loops

def ref_advantages(kind: str, rewards: list[list[float]]) -> list[list[float]]:
    out = []
    for r in rewards:
        G = len(r)
        mean = sum(r) / G
        if kind == "mean":
            out.append([ri - mean for ri in r])
        elif kind == "loo":
            out.append([0.0] * G if G == 1 else
                       [r[i] - sum(r[j] for j in range(G) if j != i) / (G - 1) for i in range(G)])
        else:
            std = math.sqrt(sum((ri - mean) ** 2 for ri in r) / (G - 1)) if G > 1 else 0.0
            out.append([(ri - mean) / (std + STD_EPS) if G > 1 else 0.0 for ri in r])
    return out


def ppo_term(rho: float, A: float, lo: float, hi: float, c: float | None) -> tuple[float, float, bool]:
    """min(rho A, clip(rho, lo, hi) A) [then max with c A for A < 0], its derivative in rho, and whether a
    clip binds."""
    unclipped, clipped = rho * A, min(max(rho, lo), hi) * A
    value, slope = (unclipped, A) if unclipped <= clipped else (clipped, 0.0)
    if c is not None and A < 0 and c * A > value:
        value, slope = c * A, 0.0
    return value, slope, value != unclipped


def ref_kl(kind: str, logp: float, ref: float) -> tuple[float, float]:
    """KL estimate of one token and its derivative in logp."""
    x = ref - logp
    if kind == "k1":
        return -x, 1.0
    if kind == "k2":
        return 0.5 * x * x, -x
    return math.exp(x) - x - 1, -math.exp(x) + 1


def ref_loss(spec: dict, logp, old, ref, A, mask, dual_clip=None, kl="k3", beta=None, weights=None):
    """(loss, d loss / d logp, #clipped units, #unclipped units) for one batch, from the equations; `weights`
    (the behaviour correction's w_t) scale each token's policy-gradient term, a sequence's term by their mean."""
    beta = spec["beta"] if beta is None else beta
    lo, hi = 1 - spec["eps"][0], 1 + spec["eps"][1]
    N, T = len(logp), len(logp[0]) if logp else 0
    rows = [i for i in range(N) if sum(mask[i]) > 0]
    G = len(rows)
    total_tokens = sum(sum(row) for row in mask)
    loss, grad = 0.0, [[0.0] * T for _ in range(N)]
    clipped = unclipped = 0
    for i in rows:
        toks = [t for t in range(T) if mask[i][t]]
        L = len(toks)
        w = {"seq-token-mean": 1 / (G * L), "token-mean": 1 / total_tokens,
             "sum-norm": 1 / (G * spec.get("C", 1.0)), "seq": 1 / (G * L)}[spec["agg"]]
        s = math.exp(sum(logp[i][t] - old[i][t] for t in toks) / L)  # s_i, the geometric mean ratio
        wt = [weights[i][t] if weights is not None else 1.0 for t in range(T)]
        if spec["ratio"] == "sequence":
            value, slope, binds = ppo_term(s, A[i], lo, hi, dual_clip)
            w_seq = sum(wt[t] for t in toks) / L
            loss -= w_seq * value / G
            for t in toks:
                grad[i][t] -= w_seq * slope * s / L / G  # d s_i / d logp_l = s_i / |o_i|
            clipped, unclipped = clipped + binds, unclipped + (not binds)
        for t in toks if spec["ratio"] != "sequence" else []:
            rho = s if spec["ratio"] == "sequence_token" else math.exp(logp[i][t] - old[i][t])
            if spec["objective"] == "cispo":
                weight = min(max(rho, lo), hi)  # sg(r_hat)
                loss -= w * wt[t] * weight * A[i] * logp[i][t]
                grad[i][t] -= w * wt[t] * weight * A[i]
                clipped, unclipped = clipped + (weight != rho), unclipped + (weight == rho)
            else:
                value, slope, binds = ppo_term(rho, A[i], lo, hi, dual_clip)
                loss -= w * wt[t] * value
                grad[i][t] -= w * wt[t] * slope * rho  # d rho / d logp = rho (also for sg[s_i] pi / sg[pi])
                clipped, unclipped = clipped + binds, unclipped + (not binds)
        for t in toks if beta > 0 else []:
            k, dk = ref_kl(kl, logp[i][t], ref[i][t])
            loss += beta * w * k
            grad[i][t] += beta * w * dk
    return loss, grad, clipped, unclipped


# ---------------------------------------------------------------- random padded batches

def random_batch(seed: int, B: int = 3, G: int = 4, T: int = 9):
    """Padded float64 logp/old/ref/mask with mixed lengths (one empty row, one full row), garbage in padding,
    and per-row off-policy scales from 1e-5 to 1 so that clips both bind and do not."""
    rng = random.Random(seed)
    N = B * G
    lengths = [rng.randint(1, T) for _ in range(N)]
    lengths[0], lengths[rng.randrange(1, N)] = T, 0
    logp, old, ref, mask = [], [], [], []
    for i in range(N):
        scale = 10 ** rng.uniform(-5, 0)
        lp = [-rng.uniform(0.05, 3) for _ in range(T)]
        mask.append([1.0 if t < lengths[i] else 0.0 for t in range(T)])
        old.append([x + scale * rng.gauss(0, 1) for x in lp])
        ref.append([x + 0.3 * rng.gauss(0, 1) for x in lp])
        for row in (lp, old[-1], ref[-1]):  # padding holds garbage the loss must ignore
            for t in range(lengths[i], T):
                row[t] = rng.uniform(-60, 60)
        logp.append(lp)
    rewards = [[float(rng.choice([0, 0.5, 1, 1])) + 0.1 * rng.random() * (b % 2) for _ in range(G)]
               for b in range(B)]
    return logp, old, ref, mask, rewards


def tensors(*rows, requires_grad_first=True):
    out = [torch.tensor(r, dtype=torch.float64) for r in rows]
    out[0].requires_grad_(requires_grad_first)
    return out


def flat(rows):
    return [x for row in rows for x in row]


def assert_close(got, expected):
    torch.testing.assert_close(got, torch.as_tensor(expected, dtype=torch.float64), rtol=1e-6, atol=1e-12)


# ---------------------------------------------------------------- defaults, advantages, loss vs reference

def test_registry_lists_the_whole_zoo():
    assert set(PAPER) <= set(algos.names())


@pytest.mark.parametrize("name", sorted(PAPER))
def test_defaults_are_the_papers(name):
    spec, algo = PAPER[name], algos.make(name)
    assert isinstance(algo, algos.Algorithm)
    assert (algo.objective, algo.ratio, algo.eps_low, algo.eps_high, algo.beta, algo.aggregation) == (
        spec["objective"], spec["ratio"], *spec["eps"], spec["beta"], AGG_NAMES[spec["agg"]])
    if "C" in spec:
        assert algo.norm_constant == spec["C"]
    assert algo.dynamic_sampling == (name == "dapo")


@pytest.mark.parametrize("name", sorted(PAPER))
@pytest.mark.parametrize("seed", [0, 1])
def test_advantages_match_reference(name, seed):
    rewards = random_batch(seed)[-1] + [[0.3, 0.9, 0.1, 0.6]]
    got = algos.make(name).advantages(torch.tensor(rewards, dtype=torch.float64))
    assert_close(got, ref_advantages(PAPER[name]["adv"], rewards))


@pytest.mark.parametrize("name", sorted(PAPER))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_loss_and_gradient_match_reference(name, seed):
    spec = PAPER[name]
    logp, old, ref, mask, rewards = random_batch(seed)
    A = flat(ref_advantages(spec["adv"], rewards))
    expected, expected_grad, n_clipped, n_unclipped = ref_loss(spec, logp, old, ref, A, mask)
    if spec["eps"][1] < INF:  # the random batch must exercise both sides of the clip
        assert n_clipped > 0 and n_unclipped > 0
    lp, o, r, m, adv = tensors(logp, old, ref, mask, A)
    loss, metrics = algos.make(name).loss(lp, o, r if spec["beta"] > 0 else None, adv, m)
    loss.backward()
    assert_close(loss, expected)
    assert_close(lp.grad, expected_grad)
    assert torch.all(lp.grad[m == 0] == 0)  # padding: exactly zero gradient
    assert metrics["num_tokens"] == sum(flat(mask)) and metrics["num_seqs"] == len(logp) - 1


@pytest.mark.parametrize("name", sorted(PAPER))
@pytest.mark.parametrize("kl", ["k1", "k2", "k3"])
def test_kl_penalty_matches_reference(name, kl):
    spec = PAPER[name]
    logp, old, ref, mask, rewards = random_batch(7)
    A = flat(ref_advantages(spec["adv"], rewards))
    expected, expected_grad, _, _ = ref_loss(spec, logp, old, ref, A, mask, kl=kl, beta=0.1)
    lp, o, r, m, adv = tensors(logp, old, ref, mask, A)
    loss, metrics = algos.make(name, beta=0.1, kl=kl).loss(lp, o, r, adv, m)
    loss.backward()
    assert_close(loss, expected)
    assert_close(lp.grad, expected_grad)
    assert metrics["kl_loss"] != 0 and "kl_ref" in metrics


@pytest.mark.parametrize("name", ["grpo", "dapo", "dr_grpo", "gspo", "gspo_token"])
def test_dual_clip_matches_reference(name):
    spec = PAPER[name]
    logp, old, ref, mask, rewards = random_batch(3)
    old = [[x - 0.8 for x in row] if i % 2 else row for i, row in enumerate(old)]  # rho ~ 2.2 > c on odd rows
    A = flat(ref_advantages(spec["adv"], rewards))
    expected, expected_grad, _, _ = ref_loss(spec, logp, old, ref, A, mask, dual_clip=1.5)
    lp, o, r, m, adv = tensors(logp, old, ref, mask, A)
    loss, metrics = algos.make(name, dual_clip=1.5).loss(lp, o, r if spec["beta"] else None, adv, m)
    loss.backward()
    assert_close(loss, expected)
    assert_close(lp.grad, expected_grad)
    assert metrics["dual_clip_frac"] > 0


@pytest.mark.parametrize("name", sorted(PAPER))
def test_global_normalisers_make_minibatches_sum_to_the_batch(name):
    algo = algos.make(name)
    logp, old, ref, mask, rewards = random_batch(4)
    lp, o, r, m = tensors(logp, old, ref, mask)
    adv = algo.advantages(torch.tensor(rewards, dtype=torch.float64)).flatten()
    ref_t = r if algo.beta > 0 else None
    full, _ = algo.loss(lp, o, ref_t, adv, m)
    (full_grad,) = torch.autograd.grad(full, lp)
    n_tok, n_seq = float(m.sum()), float((m.sum(1) > 0).sum())
    parts = [slice(0, 5), slice(5, None)]
    split = sum(algo.loss(lp[p], o[p], None if ref_t is None else ref_t[p], adv[p], m[p],
                          num_tokens=n_tok, num_seqs=n_seq)[0] for p in parts)
    (split_grad,) = torch.autograd.grad(split, lp)
    assert_close(split, full.item())
    assert_close(split_grad, full_grad)
    first = [lp[:5], o[:5], None if ref_t is None else ref_t[:5], adv[:5], m[:5]]
    assert algo.loss(*first)[0] != algo.loss(*first, num_tokens=n_tok, num_seqs=n_seq)[0]  # the divisor moved


# ---------------------------------------------------------------- edge cases

@pytest.mark.parametrize("name", sorted(PAPER))
def test_equal_rewards_and_single_completion_give_exact_zero_advantages(name):
    algo = algos.make(name)
    for dtype in (torch.float32, torch.float64):
        equal = torch.tensor([[0.1, 0.1, 0.1], [1.0, 1.0, 1.0], [0.7, 0.7, 0.7]], dtype=dtype)
        assert torch.equal(algo.advantages(equal), torch.zeros_like(equal))
        single = torch.tensor([[0.3], [1.0]], dtype=dtype)
        assert torch.equal(algo.advantages(single), torch.zeros_like(single))
    mixed = algo.advantages(torch.tensor([[0.1, 0.1, 0.1], [0.0, 1.0, 1.0]]))
    assert torch.equal(mixed[0], torch.zeros(3)) and torch.all(mixed[1] != 0)


def test_group_metrics_count_zero_std_groups():
    m = algos.group_metrics(torch.tensor([[1.0, 1.0], [0.0, 1.0], [0.0, 0.0], [0.5, 0.2]]))
    assert m["zero_std_frac"] == 0.5 and isinstance(m["reward_mean"], float)
    assert algos.group_metrics(torch.tensor([[1.0], [0.0]]))["zero_std_frac"] == 1.0


@pytest.mark.parametrize("name", sorted(PAPER))
def test_fully_masked_row_is_as_if_absent(name):
    algo = algos.make(name)
    logp, old, ref, mask, rewards = random_batch(5)
    lp, o, r, m = tensors(logp, old, ref, mask)
    adv = torch.linspace(-1, 1, lp.shape[0], dtype=torch.float64)
    masked = m.clone()
    masked[3] = 0  # e.g. a truncated completion dropped through Verdict.mask
    keep = [i for i in range(lp.shape[0]) if masked[i].sum() > 0]
    ref_t = r if algo.beta > 0 else None
    loss, metrics = algo.loss(lp, o, ref_t, adv, masked)
    loss.backward()
    kept, _ = algo.loss(lp.detach()[keep], o[keep], None if ref_t is None else r[keep], adv[keep], masked[keep])
    assert_close(loss, kept.item())
    assert torch.all(lp.grad[3] == 0) and metrics["num_seqs"] == len(keep)


@pytest.mark.parametrize("name", sorted(PAPER))
def test_zero_length_completions_give_zero_loss_not_nan(name):
    algo = algos.make(name)
    for T in (0, 4):  # no token columns at all, or columns that are all padding
        lp = torch.zeros(6, T, dtype=torch.float64, requires_grad=True)
        loss, metrics = algo.loss(lp, torch.zeros(6, T), torch.zeros(6, T), torch.ones(6), torch.zeros(6, T))
        loss.backward()
        assert loss.item() == 0.0 and torch.all(lp.grad == 0)
        assert all(math.isfinite(v) for v in metrics.values()) and metrics["num_tokens"] == 0


def far_outside_batch(delta: float = 3.0):
    """Four one-token completions: A = +1, +1, -1, -1 with log ratios +delta, -delta, +delta, -delta."""
    logp = torch.full((4, 2), -1.0, dtype=torch.float64, requires_grad=True)
    old = logp.detach() - torch.tensor([[delta], [-delta], [delta], [-delta]], dtype=torch.float64)
    mask = torch.tensor([[1.0, 0.0]] * 4, dtype=torch.float64)
    return logp, old, torch.tensor([1.0, 1.0, -1.0, -1.0], dtype=torch.float64), mask


@pytest.mark.parametrize("name", ["grpo", "dapo", "dr_grpo", "gspo", "gspo_token"])
def test_ratio_far_outside_the_clip_on_both_sides(name):
    logp, old, A, mask = far_outside_batch()
    algo = algos.make(name, beta=0.0)
    loss, metrics = algo.loss(logp, old, None, A, mask)
    loss.backward()
    g = logp.grad[:, 0]
    # the clip binds for (A > 0, rho = e^3) and (A < 0, rho = e^-3): no gradient there
    assert g[0] == 0 and g[3] == 0
    # it does not bind for (A > 0, rho = e^-3) and (A < 0, rho = e^3): gradient -w A rho
    assert g[1] < 0 and g[2] > 0 and torch.isclose(g[2] / g[1], torch.tensor(-math.exp(6.0), dtype=g.dtype))
    assert metrics["clip_frac_high"] == 0.25 and metrics["clip_frac_low"] == 0.25
    assert metrics["ratio_max"] == pytest.approx(math.exp(3)) and metrics["ratio_min"] == pytest.approx(math.exp(-3))

    logp.grad = None
    loss, metrics = algos.make(name, beta=0.0, dual_clip=3.0).loss(logp, old, None, A, mask)
    loss.backward()
    assert logp.grad[2, 0] == 0 and metrics["dual_clip_frac"] == 0.25  # rho = e^3 > c with A < 0


def test_cispo_keeps_the_gradient_of_clipped_tokens_with_a_bounded_weight():
    logp, old, A, mask = far_outside_batch()
    loss, metrics = algos.make("cispo").loss(logp, old, None, A, mask)
    loss.backward()
    # token-mean over 4 tokens: d/dlogp = -sg(clip(rho, 0, 1.28)) A / 4
    expected = [-1.28 / 4, -math.exp(-3) / 4, 1.28 / 4, math.exp(-3) / 4]
    assert_close(logp.grad[:, 0], expected)
    assert metrics["clip_frac_high"] == 0.5 and metrics["clip_frac_low"] == 0.0


def test_unclipped_reinforce_stays_finite_for_absurd_ratios_in_float32():
    logp, old, A, mask = far_outside_batch(delta=100.0)
    logp = logp.detach().float().requires_grad_()
    for name in ("reinforce", "grpo", "cispo"):  # ref = old: k3 sees log(pi_ref / pi) = -100 and +100
        loss, metrics = algos.make(name).loss(logp, old.float(), old.float(), A.float(), mask.float())
        (grad,) = torch.autograd.grad(loss, logp)
        assert torch.isfinite(loss) and torch.all(torch.isfinite(grad)) and loss.dtype == torch.float32
        assert all(math.isfinite(v) for v in metrics.values())


# ---------------------------------------------------------------- the two arguments of the seed

def test_grpo_at_ratio_one_is_reinforce_with_group_normalised_advantages():
    logp, _, _, mask, rewards = random_batch(6)
    lp, m = tensors(logp, mask)
    grpo = algos.make("grpo", beta=0.0)
    A = grpo.advantages(torch.tensor(rewards, dtype=torch.float64)).flatten()
    (g_grpo,) = torch.autograd.grad(grpo.loss(lp, lp.detach(), None, A, m)[0], lp)
    reinforce = algos.make("reinforce", aggregation="seq-mean-token-mean")
    (g_reinforce,) = torch.autograd.grad(reinforce.loss(lp, lp.detach(), None, A, m)[0], lp)
    # and the textbook REINFORCE surrogate: -1/G sum_i 1/|o_i| sum_l A_hat_i log pi(o_i^l)
    lengths = m.sum(1)
    rows = lengths > 0
    plain = -((A[:, None] * lp * m).sum(1)[rows] / lengths[rows]).mean()
    (g_plain,) = torch.autograd.grad(plain, lp)
    torch.testing.assert_close(g_grpo, g_reinforce, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(g_grpo, g_plain, rtol=1e-12, atol=1e-15)
    assert g_grpo.abs().sum() > 0


@pytest.mark.parametrize("A, per_token", [(1.0, 1.19), (-1.0, 0.81)])
def test_gspo_bounds_the_sequence_ratio_where_token_clipping_does_not(A, per_token):
    L = 1024  # |o|
    logp = torch.full((1, L), -2.0, dtype=torch.float64, requires_grad=True)
    old = logp.detach() - math.log(per_token)  # every rho_l = 1.19 (or 0.81): inside GRPO's [0.8, 1.2]
    mask, adv = torch.ones(1, L, dtype=torch.float64), torch.tensor([A], dtype=torch.float64)
    loss, metrics = algos.make("grpo", beta=0.0).loss(logp, old, None, adv, mask)
    (grad,) = torch.autograd.grad(loss, logp)
    assert metrics["clip_frac_high"] == metrics["clip_frac_low"] == 0.0 and torch.all(grad != 0)
    # the sequence ratio that token clipping leaves in force: prod_l clip(rho_l) = 1.19^1024 ~ 1e77 (0.81^1024)
    log10_prod = torch.log10(torch.exp(logp.detach() - old).clamp(0.8, 1.2)).sum().item()
    assert log10_prod > 77 if A > 0 else log10_prod < -93
    for name in ("gspo", "gspo_token"):
        loss, metrics = algos.make(name).loss(logp, old, None, adv, mask)
        (grad,) = torch.autograd.grad(loss, logp)
        assert metrics["ratio_mean"] == pytest.approx(per_token)  # s = geometric mean
        assert metrics["clip_frac_high" if A > 0 else "clip_frac_low"] == 1.0 and torch.all(grad == 0)
        assert loss.item() == pytest.approx(-(1 + 4e-4 if A > 0 else 1 - 3e-4) * A)  # bounded objective


def test_gspo_token_equals_gspo_when_advantages_are_per_sequence():
    logp, old, _, mask, _ = random_batch(8)
    lp, o, m = tensors(logp, old, mask)
    adv = torch.linspace(-1.5, 1.5, lp.shape[0], dtype=torch.float64)
    seq, _ = algos.make("gspo").loss(lp, o, None, adv, m)
    tok, _ = algos.make("gspo_token").loss(lp, o, None, adv, m)
    (g_seq,), (g_tok,) = torch.autograd.grad(seq, lp), torch.autograd.grad(tok, lp)
    torch.testing.assert_close(seq, tok, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(g_seq, g_tok, rtol=1e-12, atol=1e-15)


# ---------------------------------------------------------------- select, metrics, registry, guards

def group(correct: list[bool], rewards: list[float]) -> Group:
    verdicts = [Verdict(r, c) for r, c in zip(rewards, correct)]
    return Group(Problem(id="p", prompt="q"), [Completion(str(i)) for i in range(len(correct))], verdicts)


def test_dynamic_sampling_keeps_mixed_groups_by_correctness():
    all_right_but_shaped = group([True, True, True], [1.0, 0.7, 0.9])  # overlong shaping moved rewards
    all_wrong = group([False, False, False], [0.0, -0.2, 0.0])
    mixed = group([True, False, True], [1.0, 0.0, 1.0])
    single = group([True], [1.0])
    groups = [all_right_but_shaped, all_wrong, mixed, single]
    dapo = algos.make("dapo")
    assert dapo.select(groups) == [mixed] and dapo.max_gen_rounds >= 1
    assert algos.make("grpo").select(groups) == groups
    assert algos.make("grpo", dynamic_sampling=True).select(groups) == [mixed]


def test_metrics_are_python_floats_with_the_documented_keys():
    logp, old, ref, mask, _ = random_batch(9)
    lp, o, r, m = tensors(logp, old, ref, mask)
    adv = torch.linspace(-1, 1, lp.shape[0], dtype=torch.float64)
    _, metrics = algos.make("grpo").loss(lp, o, r, adv, m)
    assert {"pg_loss", "kl_loss", "clip_frac_low", "clip_frac_high", "ratio_mean", "ratio_min", "ratio_max",
            "kl_old", "kl_ref", "adv_mean", "adv_std", "num_tokens", "num_seqs"} == set(metrics)
    assert all(type(v) is float for v in metrics.values())
    assert metrics["adv_mean"] == pytest.approx(0.0, abs=1e-12) and metrics["kl_old"] > 0
    assert metrics["ratio_min"] <= metrics["ratio_mean"] <= metrics["ratio_max"]
    assert "kl_ref" not in algos.make("dapo").loss(lp, o, None, adv, m)[1]


def test_old_and_ref_logp_get_no_gradient():
    logp, old, ref, mask, _ = random_batch(10)
    lp, m = tensors(logp, mask)
    o, r = (torch.tensor(x, dtype=torch.float64, requires_grad=True) for x in (old, ref))
    loss, _ = algos.make("grpo").loss(lp, o, r, torch.ones(lp.shape[0], dtype=torch.float64), m)
    loss.backward()
    assert o.grad is None and r.grad is None and lp.grad is not None


def test_make_with_overrides_and_typo_hints():
    dapo = algos.make("dapo", eps_high=0.3, max_gen_rounds=3)
    assert dapo.eps_high == 0.3 and dapo.eps_low == 0.2 and dapo.max_gen_rounds == 3
    with pytest.raises(KeyError, match="Did you mean 'grpo'"):
        algos.make("grop")
    with pytest.raises(TypeError, match="no option 'eps_hgih'.*Did you mean 'eps_high'"):
        algos.make("dapo", eps_hgih=0.3)


@pytest.mark.parametrize("overrides, message", [
    (dict(kl="k4"), "kl='k4' is not one of"),
    (dict(aggregation="mean"), "aggregation='mean' is not one of"),
    (dict(ratio="sequence"), "ratio='sequence' goes with aggregation='seq-mean'"),
    (dict(aggregation="seq-mean"), "ratio='sequence' goes with aggregation='seq-mean'"),
    (dict(eps_low=-0.1), "eps_low must be >= 0"),
    (dict(dual_clip=0.5), "dual_clip must be > 1"),
    (dict(objective="cispo", ratio="sequence_token"), "objective='cispo' takes a per-token ratio"),
    (dict(norm_constant=0.0), "norm_constant must be > 0"),
    (dict(max_gen_rounds=0), "max_gen_rounds must be >= 1"),
])
def test_bad_options_are_rejected(overrides, message):
    with pytest.raises(ValueError, match=message):
        algos.make("grpo", **overrides)


@pytest.mark.parametrize("name", ["logp", "old_logp", "ref_logp", "advantages"])
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_nan_or_inf_in_any_input_is_named(name, bad):
    args = dict(logp=torch.zeros(2, 3), old_logp=torch.zeros(2, 3), ref_logp=torch.zeros(2, 3),
                advantages=torch.ones(2), mask=torch.ones(2, 3))
    args[name] = args[name].clone()
    args[name].view(-1)[1] = bad
    with pytest.raises(ValueError, match=f"^{name} contains NaN or inf"):
        algos.make("grpo").loss(**args)


def test_other_bad_inputs_get_clear_errors():
    grpo, z = algos.make("grpo"), torch.zeros(2, 3)
    with pytest.raises(ValueError, match="rewards contains NaN"):
        grpo.advantages(torch.tensor([[0.0, math.nan]]))
    with pytest.raises(ValueError, match=r"rewards must be a \[B, G\] tensor"):
        grpo.advantages(torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"old_logp has shape \(2, 4\) but logp has \(2, 3\)"):
        grpo.loss(z, torch.zeros(2, 4), z, torch.ones(2), torch.ones(2, 3))
    with pytest.raises(ValueError, match=r"advantages must have shape \(2,\)"):
        grpo.loss(z, z, z, torch.ones(1, 2), torch.ones(2, 3))
    with pytest.raises(ValueError, match=r"logp must be a padded \[N, T\] tensor"):
        grpo.loss(torch.zeros(3), torch.zeros(3), None, torch.ones(3), torch.ones(3))
    with pytest.raises(ValueError, match="mask must hold only 0 and 1"):
        grpo.loss(z, z, z, torch.ones(2), torch.full((2, 3), 0.5))
    with pytest.raises(ValueError, match="ref_logp is required"):
        grpo.loss(z, z, None, torch.ones(2), torch.ones(2, 3))
    with pytest.raises(ValueError, match="num_tokens must be > 0"):
        grpo.loss(z, z, z, torch.ones(2), torch.ones(2, 3), num_tokens=0)


def test_the_generation_budget_default_follows_the_aggregation_not_the_name():
    """MAX_TOKENS stands for the run's budget for any algorithm that aggregates by a token sum over a constant and
    leaves that constant at its default; REINFORCE's and RLOO's C = 1 and explicit constants stay."""

    @dataclass
    class BudgetPlugin(algos.Algorithm):
        aggregation: str = "seq-mean-token-sum-norm"
        norm_constant: float = MAX_TOKENS

        def advantages(self, rewards: torch.Tensor) -> torch.Tensor:
            return algos.mean_baseline(rewards)

    cases = [(BudgetPlugin(), 8.0), (algos.make("dr_grpo"), 8.0), (algos.make("dr_grpo", norm_constant=100.0), 100.0),
             (algos.make("reinforce"), 1.0), (algos.make("rloo"), 1.0), (algos.make("grpo"), 1.0)]
    for algo, want in cases:
        fit_generation_budget(algo, 8)
        assert algo.norm_constant == want, type(algo).__name__
