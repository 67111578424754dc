"""The vLLM engine on a real GPU: runs only where CUDA and vLLM are present (never in CPU-only CI)."""

import importlib.util

import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available() or importlib.util.find_spec("vllm") is None,
                                reason="needs a GPU and vLLM")


@pytest.fixture(scope="module")
def saved_tiny(tmp_path_factory):
    from rlvr.models import char_tokenizer, tiny_model

    path = tmp_path_factory.mktemp("tiny")
    tokenizer = char_tokenizer()
    tiny_model(tokenizer, seed=1).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_vllm_logprobs_match_the_learner_and_weights_sync(saved_tiny):
    from rlvr.batch import build_batch, token_logprobs
    from rlvr.models import load_policy
    from rlvr.rollout.base import Sampling
    from rlvr.rollout.vllm import VLLMEngine

    model, tokenizer = load_policy(str(saved_tiny), device="cuda")
    engine = VLLMEngine(str(saved_tiny), tokenizer, dtype="float32", gpu_memory_utilization=0.2)
    prompts = ["1 + 2 =", "13 + 24 - 7 ="]
    groups = engine.generate(prompts, 4, Sampling(max_new_tokens=8))
    completions = [c for g in groups for c in g]
    assert all(len(c.token_ids) == len(c.logprobs) > 0 for c in completions)
    batch = build_batch(tokenizer, [p for p in prompts for _ in range(4)], completions)
    with torch.no_grad():
        logp, _ = token_logprobs(model, batch)
    for i, c in enumerate(completions):
        assert torch.allclose(logp[i, :len(c.token_ids)].cpu(), torch.tensor(c.logprobs), atol=2e-3)

    with torch.no_grad():  # a different policy: after sync, greedy outputs follow the learner
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    engine.sync_weights(model)
    greedy = engine.generate(prompts, 1, Sampling(max_new_tokens=6, temperature=0.0))
    hf = __import__("rlvr.rollout.hf", fromlist=["HFEngine"]).HFEngine(model, tokenizer)
    expected = hf.generate(prompts, 1, Sampling(max_new_tokens=6, temperature=0.0))
    assert [g[0].token_ids for g in greedy] == [g[0].token_ids for g in expected]
