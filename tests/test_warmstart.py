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
