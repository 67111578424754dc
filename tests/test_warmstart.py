import pytest
import torch

import rlvr
from rlvr.models import load_policy
from rlvr.warmstart import AnswerTargets, supervised_warmstart

torch.set_num_threads(1)


def test_warmstart_lowers_the_loss_on_gold_answers():
    model, tokenizer = load_policy("tiny")
    env = rlvr.make("rlvr/Arithmetic-v0", level=1).unwrapped
    losses = supervised_warmstart(model, tokenizer, AnswerTargets(env, tokenizer), steps=30, batch_size=16)
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
    with pytest.raises(ValueError, match="continue_prob"):
        AnswerTargets(env, load_policy("tiny")[1], continue_prob=1.0)


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


def calculator_targets(tool_prob: float):
    import rlvr
    from rlvr.chat import ChatRenderer, ensure_chat_template
    from rlvr.models import char_tokenizer
    from rlvr.warmstart import EpisodeTargets

    tokenizer = ensure_chat_template(char_tokenizer())
    env = rlvr.make("rlvr/Calculator-v0", parser="pythonic", template="{prompt} =").unwrapped
    return tokenizer, EpisodeTargets(env, ChatRenderer(tokenizer, {tokenizer.eos_token_id}, env.tools), tool_prob)


def test_episode_targets_demonstrate_the_tool_some_of_the_time_and_mask_the_env_tokens():
    import numpy as np

    from rlvr.safe_eval import evaluate

    tokenizer, targets = calculator_targets(tool_prob=0.3)
    prompts, completions = targets.batch(np.random.default_rng(0), 200)
    used = 0
    for prompt, c in zip(prompts, completions):
        question = tokenizer.decode(prompt).removesuffix(" =\n")
        answer = str(int(evaluate(question)))
        model = tokenizer.decode([t for t, m in zip(c.token_ids, c.loss_mask) if m])
        env = tokenizer.decode([t for t, m in zip(c.token_ids, c.loss_mask) if not m])
        if env:
            used += 1
            assert (model, env) == (f"[calculator(expression={question!r})]</s>{answer}</s>", f"=> {answer}\n")
        else:
            assert model == f"{answer}</s>"
    assert 0.2 < used / 200 < 0.4


def test_micro_batched_warmstart_steps_equal_one_pass():
    tokenizer, targets = calculator_targets(tool_prob=0.5)
    curves = []
    for tokens in (0, 300):
        torch.manual_seed(0)
        model, _ = load_policy("tiny")
        curves.append(supervised_warmstart(model, tokenizer, targets, steps=3, batch_size=16, micro_batch_tokens=tokens))
    assert curves[0] == pytest.approx(curves[1], rel=1e-5)
