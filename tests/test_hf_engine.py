"""The hf engine's decode loop: the log-probs it records are those the learner computes for the same tokens under the
same sampling distribution, greedy decoding is transformers' own, no [N, T, V] scores are held, and prompts go in
engine batches by a token budget."""

import pytest
import torch
from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

from rlvr.batch import build_batch, token_logprobs
from rlvr.models import char_tokenizer, tiny_model
from rlvr.rollout.hf import HFEngine, stop_token_ids, token_budget_batches
from rlvr.sampling import Sampling
from test_lm_head import LargestTensor

torch.set_num_threads(1)
PROMPTS = ["1 + 2 =", "13 + 24 - 7 =", "5="]


def engine_and_learner_logprobs(engine, model, tokenizer, n, sampling):
    groups = engine.generate(PROMPTS, n, sampling)
    completions = [c for g in groups for c in g]
    batch = build_batch(tokenizer, [p for p in PROMPTS for _ in range(n)], completions)
    with torch.no_grad():
        logp, _ = token_logprobs(model, batch, sampling=sampling)
    return completions, [logp[i, :len(c.token_ids)] for i, c in enumerate(completions)]


@pytest.mark.parametrize("batch_tokens", [65536, 40])
@pytest.mark.parametrize("sampling", [Sampling(12, temperature=0.7, top_p=0.9, top_k=50),
                                      Sampling(12, temperature=0.7), Sampling(12, temperature=1.4, top_p=0.5)])
def test_engine_and_learner_logprobs_agree_under_the_sampling_distribution(batch_tokens, sampling):
    """Same weights, float32: each token's recorded log-prob is the learner's under the same temperature, top-k
    and top-p, to 1e-5, whether the rows go in one engine batch or in several."""
    tokenizer = char_tokenizer()
    model = tiny_model(tokenizer, seed=3).eval()
    torch.manual_seed(0)
    completions, learner = engine_and_learner_logprobs(HFEngine(model, tokenizer, batch_tokens=batch_tokens),
                                                       model, tokenizer, 4, sampling)
    assert all(len(c.token_ids) == len(c.logprobs) > 0 for c in completions)
    for c, lp in zip(completions, learner):
        torch.testing.assert_close(torch.tensor(c.logprobs), lp, rtol=0, atol=1e-5)


def test_truncated_sampling_draws_only_from_the_kept_set():
    """With top_k=2 every sampled token is one of the two most likely under the model's own logits at its position,
    and its log-prob is renormalised over those two."""
    tokenizer = char_tokenizer()
    model = tiny_model(tokenizer, seed=3).eval()
    torch.manual_seed(1)
    groups = HFEngine(model, tokenizer).generate(PROMPTS, 6, Sampling(8, temperature=1.0, top_k=2))
    completions = [c for g in groups for c in g]
    batch = build_batch(tokenizer, [p for p in PROMPTS for _ in range(6)], completions)
    with torch.no_grad():
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                       position_ids=batch.position_ids).logits[:, batch.prompt_width - 1:-1]
    top2 = logits.topk(2, -1)
    for i, c in enumerate(completions):
        for t, (token, logprob) in enumerate(zip(c.token_ids, c.logprobs)):
            assert token in top2.indices[i, t].tolist()
            expected = logits[i, t, token] - top2.values[i, t].logsumexp(-1)
            assert logprob == pytest.approx(float(expected), abs=1e-5)


def test_greedy_decoding_is_transformers_greedy_generate():
    tokenizer = char_tokenizer()
    model = tiny_model(tokenizer, seed=4).eval()
    groups = HFEngine(model, tokenizer).generate(PROMPTS, 2, Sampling(10, temperature=0.0))
    enc = tokenizer(PROMPTS, return_tensors="pt", padding=True)
    reference = model.generate(**enc, do_sample=False, max_new_tokens=10, pad_token_id=tokenizer.pad_token_id,
                               eos_token_id=tokenizer.eos_token_id)[:, enc["input_ids"].shape[1]:]
    for group, ref in zip(groups, reference.tolist()):
        ref = ref[:ref.index(tokenizer.eos_token_id) + 1] if tokenizer.eos_token_id in ref else ref
        assert all(c.token_ids == ref for c in group)


def test_the_engine_holds_no_scores_of_every_step():
    """Nothing the engine makes is larger than one step's [rows, V] logits or the head's weight, where keeping every
    step's scores (transformers' output_scores) makes [rows, T, V]."""
    tokenizer = char_tokenizer()
    torch.manual_seed(0)
    vocab, hidden = 4000, 16
    model = Qwen2ForCausalLM(Qwen2Config(vocab_size=vocab, hidden_size=hidden, intermediate_size=32,
                                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                         eos_token_id=tokenizer.eos_token_id)).eval()
    engine = HFEngine(model, tokenizer)
    rows, steps = len(PROMPTS) * 2, 40
    with LargestTensor() as largest:
        groups = engine.generate(PROMPTS, 2, Sampling(steps, temperature=0.8, top_p=0.9))
    assert sum(len(c.token_ids) for g in groups for c in g) > rows * steps / 2  # a random model rarely stops
    bound = max(rows * vocab, vocab * hidden)
    assert largest.largest <= bound < rows * steps * vocab / 3


def test_token_budget_batches_keep_order_and_budget():
    lengths = [3, 5, 5, 2, 9, 1, 1, 30]
    batches = token_budget_batches(lengths, max_new_tokens=4, budget=20)
    assert [i for b in batches for i in b] == list(range(len(lengths)))
    for b in batches:
        widest = max(lengths[i] for i in b)
        assert len(b) == 1 or len(b) * (widest + 4) <= 20
    assert list(batches[-1]) == [7]  # a row over the budget goes alone
    assert token_budget_batches(lengths, 4, 10**6) == [range(0, len(lengths))]


def test_rows_stop_at_any_stop_token_and_say_why():
    tokenizer = char_tokenizer()
    model = tiny_model(tokenizer, seed=4).eval()
    model.generation_config = GenerationConfig(eos_token_id=[tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("1")])
    engine = HFEngine(model, tokenizer)
    assert engine.stop_ids == {tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("1")}
    torch.manual_seed(0)
    completions = [c for g in engine.generate(PROMPTS, 8, Sampling(6, temperature=2.0)) for c in g]
    for c in completions:
        stops = [i for i, t in enumerate(c.token_ids) if t in engine.stop_ids]
        assert stops in ([], [len(c.token_ids) - 1])  # nothing after a stop token
        assert c.finish_reason == ("stop" if stops else "length")
        assert c.finish_reason == "stop" or len(c.token_ids) == 6
    assert {c.finish_reason for c in completions} == {"stop", "length"}


def test_a_tokenizer_and_model_without_eos_are_a_clear_error():
    tokenizer = char_tokenizer()
    model = tiny_model(tokenizer)
    model.generation_config = GenerationConfig()
    tokenizer.eos_token = None
    with pytest.raises(ValueError, match="no EOS token"):
        stop_token_ids(model, tokenizer)


def test_prompts_as_token_ids_sample_what_their_text_samples():
    """A multi-turn history goes in as token ids, never re-tokenized: the same ids give the same completions as
    the text they tokenize from (same seed), ids and text mix in one call, and anything else is a TypeError."""
    tokenizer = char_tokenizer()
    model = tiny_model(tokenizer, seed=3).eval()
    engine = HFEngine(model, tokenizer)
    sampling = Sampling(6, temperature=1.0)
    ids = tokenizer(PROMPTS)["input_ids"]
    torch.manual_seed(0)
    from_text = engine.generate(PROMPTS, 2, sampling)
    torch.manual_seed(0)
    from_ids = engine.generate([ids[0], PROMPTS[1], ids[2]], 2, sampling)
    assert [[c.token_ids for c in g] for g in from_ids] == [[c.token_ids for c in g] for g in from_text]
    assert [[c.logprobs for c in g] for g in from_ids] == [[c.logprobs for c in g] for g in from_text]
    for bad in ([], [1.5, 2], None):
        with pytest.raises(TypeError, match="a prompt is text or a non-empty list of token ids"):
            engine.generate([bad], 1, sampling)


def test_a_turn_ends_at_a_stop_string_which_stays_in_the_completion():
    """Sampling.stop ends a row right after the token that completes a stop string (the end of a tool call):
    every completion either holds the string once, at its end, or ran to its limit without it."""
    tokenizer = char_tokenizer()
    model = tiny_model(tokenizer, seed=3).eval()
    engine = HFEngine(model, tokenizer)
    torch.manual_seed(0)
    free = [c for g in engine.generate(PROMPTS, 8, Sampling(24, temperature=1.5)) for c in g]
    stop = max((c.text[2:4] for c in free if len(c.text) >= 4), key=lambda s: sum(s in c.text for c in free))
    torch.manual_seed(0)
    stopped = [c for g in engine.generate(PROMPTS, 8, Sampling(24, temperature=1.5, stop=(stop,))) for c in g]
    assert any(c.text.endswith(stop) for c in stopped)
    for c in stopped:
        assert c.text.count(stop) <= 1
        assert (c.text.endswith(stop) and c.finish_reason == "stop") or stop not in c.text
        assert len(c.token_ids) == len(c.logprobs)
    with pytest.raises(ValueError, match="stop must be a tuple of non-empty strings"):
        Sampling(8, stop="</tool_call>")
