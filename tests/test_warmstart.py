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


def test_warmstart_target_continues_with_solved_problems():
    import numpy as np
    import pytest

    from rlvr.warmstart import warmstart_target

    env = rlvr.make("rlvr/Arithmetic-v0", level=2).unwrapped
    problem = env.source.sample(np.random.default_rng(0))
    assert warmstart_target(problem, env, np.random.default_rng(1), 0.0) == f" {problem.answer}"
    lines = [warmstart_target(problem, env, np.random.default_rng(s), 0.9).split("\n") for s in range(20)]
    assert all(ls[0] == f" {problem.answer}" for ls in lines)
    assert np.mean([len(ls) for ls in lines]) > 3  # 1 / (1 - 0.9) = 10 expected lines
    for line in (line for ls in lines for line in ls[1:]):
        prompt, answer = line.rsplit(" ", 1)
        expression = prompt.removesuffix(" =")
        assert int(answer) == eval(expression), line  # each continuation is a correctly solved problem
    model, tokenizer = load_policy("tiny")
    with pytest.raises(ValueError, match="continue_prob"):
        supervised_warmstart(model, tokenizer, env, steps=1, continue_prob=1.0)
