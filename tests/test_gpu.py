"""Checks that need a CUDA GPU, run by `scripts/gpu_check.sh` where one is lent (`pytest -m gpu`); skipped
elsewhere, CI included. They cover what the CPU suite cannot: CUDA kernels under the chunked head, bfloat16 weights
and autocast with the head in float32, and a LoRA run with gradient checkpointing on the real vocabulary."""

import pytest
import torch

from rlvr.batch import build_batch, token_logprobs
from rlvr.models import char_tokenizer
from rlvr.sampling import Sampling
from test_lm_head import SAMPLINGS, make_model, padded_batch, reference_logprobs

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def to_cuda(batch):
    return type(batch)(batch.input_ids.cuda(), batch.attention_mask.cuda(), batch.position_ids.cuda(),
                       batch.completion_mask.cuda(), batch.prompt_width)


@pytest.mark.parametrize("name", ["T=1", "T=1.3 top_k=20 top_p=0.8"])
def test_the_chunked_head_on_cuda_matches_the_float64_reference(name):
    sampling = SAMPLINGS[name]
    model = make_model("qwen2")
    batch = padded_batch()
    weights = torch.ones(batch.completion_mask.shape, dtype=torch.float64)
    ref_logp, ref_entropy, ref_grads = reference_logprobs(model, batch, sampling, weights)
    model = model.float().cuda()
    model.zero_grad()
    logp, entropy = token_logprobs(model, to_cuda(batch), with_entropy=True, sampling=sampling, chunk_tokens=3)
    logp.sum().backward()
    torch.testing.assert_close(logp.detach().double().cpu(), ref_logp, rtol=0, atol=2e-4)
    torch.testing.assert_close(entropy.double().cpu(), ref_entropy, rtol=0, atol=2e-4)
    for p, g in zip(model.parameters(), ref_grads):
        torch.testing.assert_close(p.grad.double().cpu(), g, rtol=2e-3, atol=2e-3)


def test_a_bfloat16_model_gets_its_head_in_float32():
    """Under bfloat16 weights (and under autocast) the head computes float32 logits of the bfloat16 hidden states:
    the log-probs equal that float32 computation, closer than the model's own bfloat16 logits get."""
    model = make_model("qwen2").to(torch.bfloat16).cuda()
    batch = to_cuda(padded_batch())
    with torch.no_grad():
        logp, _ = token_logprobs(model, batch)
        from rlvr.lm_head import final_hidden_states

        with final_hidden_states(model) as captured:
            model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, position_ids=batch.position_ids)
        hidden = captured[0][:, batch.prompt_width - 1:-1].float()
        logits32 = hidden @ model.lm_head.weight.float().T
        bf16_logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                            position_ids=batch.position_ids).logits[:, batch.prompt_width - 1:-1].float()
    targets = batch.input_ids[:, batch.prompt_width:]
    mask = batch.completion_mask
    exact = logits32.log_softmax(-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1) * mask
    rounded = bf16_logits.log_softmax(-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1) * mask
    assert (logp - exact).abs().max() < 1e-5 < (rounded - exact).abs().max()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        auto, _ = token_logprobs(model.float(), batch)
    assert auto.dtype == torch.float32


def test_engine_and_learner_agree_on_cuda_under_truncated_sampling():
    from rlvr.models import tiny_model
    from rlvr.rollout.hf import HFEngine

    tokenizer = char_tokenizer()
    model = tiny_model(tokenizer, seed=3).cuda().eval()
    sampling = Sampling(12, temperature=0.7, top_p=0.9, top_k=50)
    prompts = ["1 + 2 =", "13 + 24 - 7 ="]
    torch.manual_seed(0)
    completions = [c for g in HFEngine(model, tokenizer).generate(prompts, 4, sampling) for c in g]
    batch = build_batch(tokenizer, [p for p in prompts for _ in range(4)], completions)
    with torch.no_grad():
        logp, _ = token_logprobs(model, to_cuda(batch), sampling=sampling)
    for i, c in enumerate(completions):
        torch.testing.assert_close(torch.tensor(c.logprobs), logp[i, :len(c.token_ids)].cpu(), rtol=0, atol=1e-4)


def test_a_lora_run_with_bf16_autocast_and_checkpointing_on_the_real_vocabulary(tmp_path):
    """Qwen2-shaped, 151,936 tokens, on CUDA: LoRA, bf16 autocast, gradient checkpointing, micro-batches by tokens;
    it trains with finite losses, the engine (under the same autocast) and the learner agree to bfloat16 accuracy,
    and the run resumes from its adapter checkpoint."""
    from rlvr.models import qwen2_shaped
    from rlvr.trainer import TrainConfig, Trainer

    model, tokenizer = qwen2_shaped(hidden_size=128, num_layers=2)
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    values = dict(model=str(tmp_path / "model"), device="cuda", steps=2, num_prompts=4, group_size=4,
                  max_new_tokens=64, mixed_precision="bf16", gradient_checkpointing=True, micro_batch_tokens=512,
                  lora={"r": 8, "alpha": 16}, algo="grpo", eval_every=0, save_every=1, progress=False,
                  out_dir=str(tmp_path / "run"), temperature=0.7, top_p=0.9)
    records = Trainer(TrainConfig(**values)).train()
    assert all(torch.isfinite(torch.tensor(r["pg_loss"])) for r in records)
    assert all(r["logprob_mismatch"] < 0.05 for r in records), [r["logprob_mismatch"] for r in records]
    resumed = Trainer(TrainConfig(**{**values, "steps": 3})).train(resume=True)
    assert [r["step"] for r in resumed] == [3]
