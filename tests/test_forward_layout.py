"""How the learner's forwards lay out a batch: length buckets (the fewest padded tokens, checked against every
possible cut), identical rows run once, and KV caches gathered per bucket without touching the shared prefill."""

import itertools

import numpy as np
import pytest
import torch

from rlvr.batch import build_batch, distinct_rows, length_buckets, prefill_distinct, select_cache, token_logprobs
from rlvr.models import char_tokenizer, tiny_model
from rlvr.types import Completion


def padded_tokens(lengths: torch.Tensor, groups: list[torch.Tensor]) -> int:
    return sum(len(g) * int(lengths[g].max()) for g in groups)


def fewest_padded_tokens(lengths: list[int], most: int) -> int:
    """Brute force: every way to cut the sorted lengths into at most `most` runs."""
    values = sorted(lengths)
    best = len(values) * values[-1]
    for k in range(1, min(most, len(values)) + 1):
        for cuts in itertools.combinations(range(1, len(values)), k - 1):
            edges = [0, *cuts, len(values)]
            best = min(best, sum((b - a) * values[b - 1] for a, b in zip(edges, edges[1:])))
    return best


@pytest.mark.parametrize("seed", range(20))
def test_length_buckets_pad_the_fewest_tokens(seed):
    rng = np.random.default_rng(seed)
    lengths = torch.tensor(rng.integers(0, int(rng.integers(2, 30)), int(rng.integers(1, 11))))
    for most in (1, 2, 3, 5):
        groups = length_buckets(lengths, most)
        assert sorted(torch.cat(groups).tolist()) == list(range(len(lengths)))  # every row exactly once
        assert len(groups) <= most and all(len(g) for g in groups)
        if most == 1:
            assert torch.equal(groups[0], torch.arange(len(lengths)))  # one bucket: the batch as it is
        for a, b in zip(groups, groups[1:]):  # runs of consecutive lengths
            assert lengths[a].max() <= lengths[b].min()
        assert padded_tokens(lengths, groups) == fewest_padded_tokens(lengths.tolist(), most)


def test_length_buckets_of_many_distinct_lengths_stay_fast_and_close_to_the_best():
    """Past 256 distinct lengths they are rounded up to a coarser grid: a partition still, padding near the
    optimum of the exact lengths (which a 4-way cut of 2,000 uniform lengths puts at about 5/8 of N * max)."""
    lengths = torch.randint(1, 8192, (2000,), generator=torch.Generator().manual_seed(0))
    groups = length_buckets(lengths, 4)
    assert sorted(torch.cat(groups).tolist()) == list(range(2000))
    assert padded_tokens(lengths, groups) < 0.64 * 2000 * int(lengths.max())


def test_select_cache_leaves_the_shared_prefill_as_it_was():
    tokenizer = char_tokenizer()
    model = tiny_model(tokenizer, seed=1).double()
    ids = torch.tensor([[5, 6, 7], [5, 6, 7], [8, 9, 10]])
    mask, positions = torch.ones_like(ids), torch.arange(3).expand(3, 3)
    _, cache, row_of = prefill_distinct(model, ids, mask, positions)
    keys = [layer.keys.clone() for layer in cache.layers]
    part = select_cache(cache, row_of[torch.tensor([2, 0, 1])])
    assert [layer.keys.shape[0] for layer in cache.layers] == [2] * len(keys)
    for layer, before, mine in zip(cache.layers, keys, part.layers):
        assert torch.equal(layer.keys, before)
        assert torch.equal(mine.keys, before[row_of[torch.tensor([2, 0, 1])]])


def test_identical_rows_run_once_but_rows_with_other_loss_masks_do_not_merge():
    """A multi-turn row whose tokens equal another's but whose environment tokens differ (loss mask) keeps its own
    log-probs (0 on the environment's tokens); exact copies share one forward and get equal log-probs and the sum
    of their gradients."""
    tokenizer = char_tokenizer()
    model = tiny_model(tokenizer, seed=2).double()
    ids = tokenizer("12+3=", add_special_tokens=False)["input_ids"][:4]
    rows = [Completion("", ids), Completion("", ids), Completion("", ids, loss_mask=[1, 0, 0, 1]),
            Completion("", ids[:2])]
    batch = build_batch(tokenizer, ["1+1="] * 4, rows)
    key = torch.cat([batch.input_ids, batch.completion_mask.long()], 1)
    assert len(distinct_rows(key)[0]) == 3
    results = []
    for dedupe in (False, True):
        model.zero_grad()
        logp, _ = token_logprobs(model, batch, dedupe=dedupe, buckets=2)
        (logp * torch.arange(1.0, 1 + logp.numel(), dtype=torch.float64).reshape(logp.shape)).sum().backward()
        results.append((logp.detach(), [p.grad.clone() for p in model.parameters()]))
    (plain, grads0), (deduped, grads1) = results
    torch.testing.assert_close(deduped, plain, rtol=0, atol=1e-12)
    assert torch.equal(deduped[0], deduped[1]) and deduped[2, 1] == 0 and deduped[2, 2] == 0 and deduped[2, 0] != 0
    for g1, g0 in zip(grads1, grads0):
        torch.testing.assert_close(g1, g0, rtol=1e-5, atol=1e-5 * max(1.0, float(g0.abs().max())))
