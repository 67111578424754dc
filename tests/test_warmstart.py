import torch

import rlvr
from rlvr.models import load_policy
from rlvr.warmstart import supervised_warmstart

torch.set_num_threads(1)


def test_warmstart_lowers_the_loss_on_gold_answers():
    model, tokenizer = load_policy("tiny")
    env = rlvr.make("rlvr/Arithmetic-v0", level=1).unwrapped
    losses = supervised_warmstart(model, tokenizer, env, steps=30, batch_size=16)
    assert len(losses) == 30 and losses[-1] < 0.6 * losses[0]


def test_warmstart_target_sometimes_echoes_the_question():
    import numpy as np
    import pytest

    from rlvr.warmstart import warmstart_target

    env = rlvr.make("rlvr/Arithmetic-v0", level=2).unwrapped
    problem = env.source.sample(np.random.default_rng(0))
    assert warmstart_target(problem, env, np.random.default_rng(1), 0.0) == f" {problem.answer}"
    texts = [warmstart_target(problem, env, np.random.default_rng(s), 0.7) for s in range(200)]
    echoed = f" {problem.answer}\n{env.format_prompt(problem)}"
    assert set(texts) == {f" {problem.answer}", echoed}
    assert 0.6 < np.mean([t == echoed for t in texts]) < 0.8
    model, tokenizer = load_policy("tiny")
    with pytest.raises(ValueError, match="continue_prob"):
        supervised_warmstart(model, tokenizer, env, steps=1, continue_prob=1.0)


def test_warmstart_learning_rate_warms_up_then_decays_on_a_cosine():
    import math

    from rlvr.warmstart import warmstart_lr_factor

    factors = [warmstart_lr_factor(i, 1500) for i in range(1500)]
    cosine = [0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * i / 1500)) for i in range(1500)]
    assert [f / c for f, c in zip(factors[:3], cosine)] == [1 / 50, 2 / 50, 3 / 50]  # warm-up over 50 steps
    assert factors[49:] == cosine[49:]
    assert all(a >= b for a, b in zip(factors[49:], factors[50:]))  # then never rises
    assert factors[750] == cosine[750] and 0.1 < factors[-1] < 0.1001  # down to lr/10
    assert warmstart_lr_factor(0, 30) == 1 / 3  # a short run warms up over a tenth of it
