"""Multi-turn completions: the tokens an environment writes between the model's turns are context for the learner,
never loss. Checked against a float64 reference written from the definitions (DAPO's token-mean over the model's
tokens only), for a group whose episodes have different numbers of turns."""

import copy
import math

import pytest
import torch

from rlvr.batch import build_batch
from rlvr.trainer import TrainConfig, Trainer
from rlvr.types import Completion, Group, Verdict

torch.set_num_threads(1)


def turns(tokenizer, *parts: tuple[str, str]) -> Completion:
    """A completion of alternating ("model", text) and ("env", text) parts, character tokens, EOS at the end."""
    ids, mask = [], []
    for who, text in parts:
        piece = tokenizer(text, add_special_tokens=False)["input_ids"]
        ids += piece
        mask += [int(who == "model")] * len(piece)
    ids.append(tokenizer.eos_token_id)
    mask.append(1)
    return Completion(text="", token_ids=ids, logprobs=[0.0] * len(ids), loss_mask=mask)


def test_build_batch_trains_only_the_model_tokens():
    from rlvr.models import char_tokenizer

    tok = char_tokenizer()
    c = turns(tok, ("model", "12"), ("env", "=3"), ("model", "4"))
    plain = Completion(text="7", token_ids=[tok.convert_tokens_to_ids("7")])
    batch = build_batch(tok, ["1+2", "9-2"], [c, plain])
    assert batch.completion_mask[0].tolist() == [1, 1, 0, 0, 1, 1]
    assert batch.completion_mask[1].tolist() == [1, 0, 0, 0, 0, 0]
    assert batch.attention_mask[0, batch.prompt_width:].tolist() == [1] * 6  # env tokens stay in the context
    bad = Completion(text="", token_ids=[5, 6], loss_mask=[1])
    with pytest.raises(ValueError, match="completion 0: loss_mask must hold one 0 or 1 per token id"):
        build_batch(tok, ["1"], [bad])
    assert c.num_sampled == 4 and plain.num_sampled == 1


def test_an_update_on_episodes_of_different_turns_equals_the_float64_reference(tmp_path):
    cfg = TrainConfig(algo="dapo", out_dir=str(tmp_path), warmstart_steps=0, eval_problems=2, progress=False,
                      num_prompts=2, group_size=4, max_new_tokens=8, max_grad_norm=1e9)
    trainer = Trainer(cfg)
    tok, env = trainer.tokenizer, trainer.env
    problems = env.source.distinct(2)
    episodes = [
        [turns(tok, ("model", "1")), turns(tok, ("model", "12"), ("env", "x3"), ("model", "5")),
         turns(tok, ("model", "9"), ("env", "no"), ("model", "8"), ("env", "no"), ("model", "77")),
         turns(tok, ("model", "4"), ("env", "ok"))],
        [turns(tok, ("model", "30"), ("env", "y"), ("model", "3")), turns(tok, ("model", "2")),
         turns(tok, ("model", "6"), ("env", "zz"), ("model", "1")), turns(tok, ("model", "55"))],
    ]
    rewards = [[1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 1.0, 1.0]]
    groups = [Group(p, cs, [Verdict(r, bool(r)) for r in rs]) for p, cs, rs in zip(problems, episodes, rewards)]
    dapo_reference_update(trainer, groups)


def dapo_reference_update(trainer: Trainer, groups: list[Group]) -> None:
    """`trainer.update(groups)` (one SGD step, lr 1) against a float64 reference: a copy of the policy, log-probs
    from the full logits, DAPO's loss at rho = 1, whose gradient is
    -1/sum|o_i| sum_i A_i sum_{t: model token} grad log pi(o_i^t)."""
    tok = trainer.tokenizer
    ref = copy.deepcopy(trainer.model).double()
    loss = torch.zeros((), dtype=torch.float64)
    n_model = sum(c.num_sampled for g in groups for c in g.completions)
    for group in groups:
        rs = group.rewards
        mean = sum(rs) / len(rs)
        std = math.sqrt(sum((r - mean) ** 2 for r in rs) / (len(rs) - 1))
        prompt = trainer.collector.first_prompt(group.problem)
        if isinstance(prompt, str):
            prompt = tok(prompt, add_special_tokens=trainer.add_special_tokens)["input_ids"]
        for c, r in zip(group.completions, rs):
            advantage = (r - mean) / (std + 1e-6)
            ids = torch.tensor([prompt + c.token_ids])
            logits = ref(input_ids=ids).logits[0, len(prompt) - 1:-1]
            logp = torch.log_softmax(logits, -1).gather(1, torch.tensor(c.token_ids)[:, None])[:, 0]
            for t, m in enumerate(c.loss_mask or [1] * len(c.token_ids)):
                if m:
                    loss = loss - advantage * torch.exp(logp[t] - logp[t].detach()) / n_model
    loss.backward()

    model = trainer.model
    before = [p.detach().clone() for p in model.parameters()]
    trainer.optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    trainer.scheduler = torch.optim.lr_scheduler.LambdaLR(trainer.optimizer, lambda _: 1.0)
    metrics = trainer.update(groups)
    assert metrics["pg_loss"] == pytest.approx(float(loss.detach()), abs=1e-6)
    moved = False
    for b, p, r in zip(before, model.parameters(), ref.parameters()):
        step = (b - p.detach()).double()
        torch.testing.assert_close(step, r.grad, rtol=1e-4, atol=1e-6)
        moved |= bool(step.abs().max() > 0)
    assert moved
