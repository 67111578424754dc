"""The chunked LM head and the sampling distribution against float64 references written from the definitions:
full [N, T, V] logits, divided by the temperature, truncated by top-k and top-p as defined (descending order, a
plain loop per row), then log-softmax; gradients by autograd through that reference."""

import itertools

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from transformers import (CohereConfig, CohereForCausalLM, Gemma2Config, Gemma2ForCausalLM, GPT2Config,
                          GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM)

from rlvr.batch import build_batch, token_logprobs
from rlvr.lm_head import check_output_head, final_hidden_states, sampled_logprobs
from rlvr.models import char_tokenizer
from rlvr.sampling import Sampling, kept_threshold, sample, truncate
from rlvr.types import Completion

torch.set_num_threads(1)
TOKENIZER = char_tokenizer()
V = len(TOKENIZER)
SAMPLINGS = {
    "T=1": Sampling(temperature=1.0),
    "T=0.7": Sampling(temperature=0.7),
    "T=0.7 top_k=5": Sampling(temperature=0.7, top_k=5),
    "T=0.7 top_p=0.9": Sampling(temperature=0.7, top_p=0.9),
    "T=1.3 top_k=20 top_p=0.8": Sampling(temperature=1.3, top_k=20, top_p=0.8),
}


def make_model(arch: str) -> torch.nn.Module:
    """A small float64 model of each head layout: tied (Llama, GPT-2) and untied (Llama, Qwen2) embeddings, a head
    with a bias, Cohere's logit scale and Gemma 2's soft-cap (its logits are scaled up so the cap binds)."""
    torch.manual_seed(0)
    common = dict(vocab_size=V, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    if arch == "gpt2":
        model = GPT2LMHeadModel(GPT2Config(vocab_size=V, n_embd=16, n_layer=2, n_head=4, n_positions=64,
                                           resid_pdrop=0, embd_pdrop=0, attn_pdrop=0, pad_token_id=0))
    elif arch == "qwen2":
        model = Qwen2ForCausalLM(Qwen2Config(**common, tie_word_embeddings=False))
    elif arch == "cohere":
        model = CohereForCausalLM(CohereConfig(**common, logit_scale=0.37, tie_word_embeddings=True))
    elif arch == "gemma2":
        model = Gemma2ForCausalLM(Gemma2Config(**common, head_dim=4, final_logit_softcapping=1.5))
    else:
        model = LlamaForCausalLM(LlamaConfig(**common, tie_word_embeddings=arch == "llama-tied"))
        if arch == "llama-bias":
            model.lm_head = torch.nn.Linear(16, V, bias=True)
    model = model.double().eval()
    with torch.no_grad():  # logits of a few units, so that top-p and the soft-cap have something to cut
        model.get_output_embeddings().weight.mul_(8)
    return model


def reference_truncate(z: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """Top-k then top-p as defined, one row at a time: keep the k largest logits (and ties of the k-th), then keep a
    token iff the probability of the kept tokens larger than it (renormalised over what top-k kept) is < p."""
    out = torch.full_like(z, float("-inf"))
    for row in range(z.shape[0]):
        values = z[row]
        keep = torch.ones_like(values, dtype=torch.bool)
        if top_k:
            keep &= values >= values.sort(descending=True).values[top_k - 1]
        if top_p < 1:
            probs = torch.where(keep, values, float("-inf")).softmax(-1)
            for j in range(len(values)):
                larger = probs[values > values[j]].sum()
                keep[j] &= bool(larger < top_p)
        out[row, keep] = values[keep]
    return out


def reference_logprobs(model, batch, sampling: Sampling, share_grad_weights):
    """log pi(token), entropy [N, T] and d(weighted sum of log pi)/d params, through full logits."""
    model.zero_grad()
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                   position_ids=batch.position_ids).logits[:, batch.prompt_width - 1:-1]
    z = logits / sampling.scale
    targets = batch.input_ids[:, batch.prompt_width:]
    if sampling.truncates:
        flat = reference_truncate(z.detach().reshape(-1, V), sampling.top_k, sampling.top_p).reshape(z.shape)
        keep = flat.isfinite()
        keep.scatter_(-1, targets.unsqueeze(-1), True)  # the rule: the sampled token is always kept
        z = z.masked_fill(~keep, float("-inf"))
    logp_all = z.log_softmax(-1)
    mask = batch.completion_mask
    logp = logp_all.gather(-1, targets.unsqueeze(-1)).squeeze(-1) * mask
    entropy = -(logp_all.exp() * logp_all.nan_to_num(neginf=0.0)).sum(-1) * mask
    (logp * share_grad_weights).sum().backward()
    return logp.detach(), entropy.detach(), [p.grad.clone() for p in model.parameters()]


def padded_batch(left_padding: bool = True):
    """Groups with prompts of different lengths (left padding), completions of different lengths (right padding),
    an empty completion, and a prompt that appears once. Without `left_padding`, the prompts are of one length
    (transformers' Gemma 2 gives NaN on left-padded float64 batches). Rows 1 and 2 are identical."""
    rng = torch.Generator().manual_seed(0)
    prompts = ["1+2=", "13+24-7=", "9-9="] if left_padding else ["1+2=", "3+4=", "9-9="]
    rows = [p for p in prompts for _ in range(3)] + ["100+1=" if left_padding else "5+1="]
    lengths = [0, 4, 2, 5, 1, 3, 6, 2, 4, 3]
    completions = [Completion("", torch.randint(3, V, (n,), generator=rng).tolist()) for n in lengths]
    completions[2] = completions[1]  # a repeated answer (deduplicated forwards run it once)
    return build_batch(TOKENIZER, rows, completions)


ARCHS = ["llama-tied", "llama-untied", "qwen2", "gpt2", "llama-bias", "cohere", "gemma2"]


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("name", list(SAMPLINGS))
def test_chunked_logprobs_entropies_and_gradients_equal_the_full_logits(arch, name):
    sampling = SAMPLINGS[name]
    model = make_model(arch)
    batch = padded_batch(left_padding=arch != "gemma2")
    weights = torch.linspace(0.5, 1.5, batch.completion_mask.numel(), dtype=torch.float64).reshape(
        batch.completion_mask.shape)
    ref_logp, ref_entropy, ref_grads = reference_logprobs(model, batch, sampling, weights)
    assert (ref_logp != 0).sum() == batch.completion_mask.sum()
    # each LM-head chunk size under each layout of the forwards: (shared prompts, length buckets, identical rows once)
    layouts = [(False, 1, False), (True, 1, False), (False, 3, True), (True, 3, True)]
    for chunk, (share, buckets, dedupe) in itertools.product((1, 3, 0), layouts):
        model.zero_grad()
        logp, entropy = token_logprobs(model, batch, with_entropy=True, share_prompts=share, sampling=sampling,
                                       chunk_tokens=chunk, buckets=buckets, dedupe=dedupe)
        (logp * weights).sum().backward()
        torch.testing.assert_close(logp.detach(), ref_logp, rtol=0, atol=1e-10)
        torch.testing.assert_close(entropy, ref_entropy, rtol=0, atol=1e-10)
        # another layout sums in another order, and RMSNorm computes in float32 (see test_trainer): float32's
        # precision relative to each gradient's scale
        tolerance = 1e-5 if (share, buckets, dedupe) != layouts[0] else 1e-10
        for p, g in zip(model.parameters(), ref_grads):
            torch.testing.assert_close(p.grad, g, rtol=tolerance, atol=tolerance * max(1.0, float(g.abs().max())),
                                       msg=lambda m: f"chunk {chunk}, layout {share, buckets, dedupe}: {m}")


def test_a_truncated_sampled_token_keeps_a_finite_logprob_and_gradient():
    """A token outside the learner's top-k (as when an engine with other weights sampled it) is added to the kept
    set: its log-prob is renormalised over the top-k plus itself, not -inf."""
    torch.manual_seed(1)
    hidden = torch.randn(4, 16, dtype=torch.float64, requires_grad=True)
    model = make_model("llama-untied")
    weight = model.lm_head.weight
    z = (hidden @ weight.T).detach()
    outside = z.argsort(-1)[:, 0]  # the least likely token of each row
    sampling = Sampling(temperature=1.0, top_k=3)
    logp, _ = sampled_logprobs(model, hidden, outside, sampling)
    top = z.topk(3, -1).values
    expected = z.gather(-1, outside[:, None]).squeeze(-1) - torch.cat([top, z.gather(-1, outside[:, None])], -1
                                                                        ).logsumexp(-1)
    torch.testing.assert_close(logp.detach(), expected)
    logp.sum().backward()
    assert torch.isfinite(hidden.grad).all() and hidden.grad.abs().sum() > 0


def test_kept_threshold_and_truncate_follow_the_definitions():
    torch.manual_seed(2)
    z = torch.randn(64, 40, dtype=torch.float64) * 3
    for top_k, top_p in [(5, 1.0), (0, 0.9), (0, 0.3), (10, 0.5), (40, 0.95), (1, 0.9)]:
        sampling = Sampling(top_k=top_k, top_p=top_p)
        expected = reference_truncate(z, top_k, top_p)
        assert torch.equal(truncate(z, sampling), expected), (top_k, top_p)
        assert torch.equal(kept_threshold(z, sampling), expected.masked_fill(expected.isinf(), float("inf")).amin(-1))
    assert kept_threshold(z, Sampling()) is None and truncate(z, Sampling(temperature=0, top_k=3)) is z


def test_sample_draws_only_kept_tokens_with_their_probabilities():
    torch.manual_seed(3)
    z = torch.randn(1, 30).repeat(20000, 1)
    sampling = Sampling(temperature=0.5, top_k=8, top_p=0.8)
    tokens, logprobs = sample(z / sampling.scale, sampling)
    probs = truncate(z / sampling.scale, sampling).softmax(-1)[0]
    assert set(tokens.tolist()) <= set(probs.nonzero().squeeze(-1).tolist())
    frequencies = torch.bincount(tokens, minlength=30).double() / len(tokens)
    torch.testing.assert_close(frequencies, probs.double(), atol=0.015, rtol=0)
    torch.testing.assert_close(logprobs, probs.log()[tokens])
    greedy, greedy_logprobs = sample(z[:2], Sampling(temperature=0))
    assert greedy.tolist() == [int(z[0].argmax())] * 2
    torch.testing.assert_close(greedy_logprobs, z[:2].log_softmax(-1)[:, int(z[0].argmax())])


class LargestTensor(TorchDispatchMode):
    """Records the element count of the largest tensor any operation creates."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


def test_no_tensor_of_all_logits_is_made_in_forward_or_backward():
    """With chunks of 4 tokens, no tensor in forward or backward is larger than 4 tokens' logits or the head's own
    weight (its gradient), where the full computation makes [N, T, V]: a 4,000-token vocabulary, hidden size 16."""
    torch.manual_seed(0)
    vocab, hidden = 4000, 16
    model = Qwen2ForCausalLM(Qwen2Config(vocab_size=vocab, hidden_size=hidden, intermediate_size=32,
                                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2))
    batch = padded_batch()
    n_logits = batch.completion_mask.numel() * vocab
    bound = max(4 * vocab, vocab * hidden)
    with LargestTensor() as full:
        model(input_ids=batch.input_ids).logits.sum().backward()
    assert full.largest >= n_logits > 3 * bound
    for share in (False, True):
        with LargestTensor() as chunked:
            logp, _ = token_logprobs(model, batch, with_entropy=True, share_prompts=share, chunk_tokens=4,
                                     sampling=SAMPLINGS["T=1.3 top_k=20 top_p=0.8"])
            logp.sum().backward()
        assert chunked.largest <= bound, (chunked.largest, bound)


def test_final_hidden_states_skips_the_head_and_records_its_input():
    model = make_model("gpt2")
    ids = torch.tensor([[5, 6, 7]])
    with final_hidden_states(model) as captured:
        out = model(input_ids=ids)
    assert out.logits.shape == (1, 0, V) and captured[0].shape == (1, 3, 16)
    torch.testing.assert_close(model.lm_head(captured[0]), model(input_ids=ids).logits)


@pytest.mark.parametrize("arch", ["llama-tied", "qwen2", "gpt2", "llama-bias", "cohere", "gemma2"])
def test_check_output_head_accepts_known_heads(arch):
    check_output_head(make_model(arch))


def test_check_output_head_rejects_a_head_it_does_not_reproduce():
    class Doubled(LlamaForCausalLM):
        def forward(self, *args, **kwargs):
            out = super().forward(*args, **kwargs)
            out.logits = out.logits * 2
            return out

    model = make_model("llama-untied")
    odd = Doubled(model.config).double()
    with pytest.raises(NotImplementedError, match="does not know this model's output layer"):
        check_output_head(odd)


def test_a_lora_adapted_head_is_a_clear_error():
    peft = pytest.importorskip("peft")
    model = peft.get_peft_model(make_model("llama-untied"), peft.LoraConfig(r=2, target_modules=["lm_head"]))
    with pytest.raises(TypeError, match="leave lm_head out of lora.target_modules"):
        check_output_head(model)
