"""LoRA through peft: only the adapters learn, the reference is the base model with its adapters disabled, engines of
their own get merged weights while the learner's stay untouched, checkpoints hold the adapters and resume exactly,
`rlvr save` writes a merged model, and bad options are clear errors."""

import copy
import json

import pytest
import torch

from rlvr.batch import build_batch, token_logprobs
from rlvr.cli import main as cli_main
from rlvr.lora import apply_lora, base_state_dict
from rlvr.models import char_tokenizer, load_policy, policy_state_dict, tiny_model
from rlvr.trainer import Trainer
from rlvr.types import Completion
from test_trainer import easy_config, unbroken_and_resumed

peft = pytest.importorskip("peft")
torch.set_num_threads(1)
LORA = {"r": 8, "alpha": 16, "target_modules": "q_proj,v_proj,up_proj,down_proj"}


def adapted_tiny(seed: int = 0):
    """The tiny model with LoRA adapters whose B is random (peft starts it at 0, which would make the adapters a
    no-op), so that merging changes the weights."""
    tokenizer = char_tokenizer()
    model = apply_lora(tiny_model(tokenizer, seed=seed), LORA)
    torch.manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    return model, tokenizer


def some_batch(tokenizer):
    completions = [Completion("", ids) for ids in ([5, 6, 7], [8, 9], [10, 11, 12, 13])]
    return build_batch(tokenizer, ["1+2=", "1+2=", "30-4="], completions)


def test_lora_learns_the_easy_task_and_updates_only_the_adapters(tmp_path):
    """A saved base model (the tiny one with embeddings twice as large: from-scratch embeddings are too small for
    a few low-rank steps to move the first token's distribution), adapters on every linear layer."""
    tokenizer = char_tokenizer()
    base = tiny_model(tokenizer)
    with torch.no_grad():
        base.model.embed_tokens.weight.mul_(2)
    base.save_pretrained(tmp_path / "base")
    tokenizer.save_pretrained(tmp_path / "base")
    trainer = Trainer(easy_config(tmp_path, model=str(tmp_path / "base"), algo="grpo", lr=1e-2,
                                  lora={"r": 8, "alpha": 16, "target_modules": "all-linear"}))
    base_before = {k: v.clone() for k, v in base_state_dict(trainer.model, merged=False).items()}
    optimized = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    names = {id(p): n for n, p in trainer.model.named_parameters()}
    assert optimized and all("lora_" in names[i] for i in optimized)
    records = trainer.train()
    final = sum(r["reward"] for r in records[-3:]) / 3
    assert records[0]["reward"] < 0.4 and final > records[0]["reward"] + 0.25, (records[0]["reward"], final)
    for key, value in base_state_dict(trainer.model, merged=False).items():
        assert torch.equal(value, base_before[key]), key
    assert trainer.ref_model is None  # no second copy of the weights
    assert not (tmp_path / "run/checkpoint/base").exists()  # a saved base is read again from --model


def test_the_reference_is_the_base_model_with_adapters_disabled(tmp_path):
    trainer = Trainer(easy_config(tmp_path, algo="grpo", lora=LORA))
    base = tiny_model(trainer.tokenizer)  # the same seed: the base weights before any adapter
    with torch.no_grad():  # move the adapters away from their zero start
        for name, p in trainer.model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    batch = some_batch(trainer.tokenizer)
    with torch.no_grad():
        expected = token_logprobs(base, batch, sampling=trainer.sampling)[0]
        adapted = token_logprobs(trainer.model, batch, sampling=trainer.sampling)[0]
    reference = trainer.reference_logprobs(batch)
    torch.testing.assert_close(reference, expected, rtol=0, atol=1e-6)
    assert (adapted - expected).abs().max() > 1e-3  # the adapters matter, and were switched off


def test_merged_weights_equal_peft_merge_and_leave_the_learner_untouched():
    model, tokenizer = adapted_tiny()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    merged = policy_state_dict(model)
    expected = copy.deepcopy(model).merge_and_unload().state_dict()
    assert merged.keys() == expected.keys() == tiny_model(tokenizer).state_dict().keys()
    for key in expected:
        torch.testing.assert_close(merged[key], expected[key], rtol=0, atol=1e-6)
    for key, value in model.state_dict().items():  # bit for bit
        assert torch.equal(value, before[key]), key
    plain = tiny_model(tokenizer)
    plain.load_state_dict(merged)
    batch = some_batch(tokenizer)
    with torch.no_grad():
        torch.testing.assert_close(token_logprobs(plain, batch)[0], token_logprobs(model, batch)[0], atol=1e-5, rtol=0)


def test_a_lora_checkpoint_holds_the_adapters_and_resumes_exactly(tmp_path):
    unbroken, resumed = unbroken_and_resumed(tmp_path, lora=LORA)
    assert [r["step"] for r in resumed] == [0, 1, 2, 3, 4] and resumed == unbroken
    checkpoint = tmp_path / "b/run/checkpoint"
    assert (checkpoint / "model/adapter_model.safetensors").exists()
    assert not (checkpoint / "model/model.safetensors").exists() and not (checkpoint / "ref").exists()
    assert (checkpoint / "base/model.safetensors").exists()  # the built-in model's base is not on any hub


def test_a_lora_run_on_the_real_vocabulary_resumes_exactly(tmp_path):
    """A saved Qwen2-shaped model with a 151,936-token vocabulary (hidden 64), lora.r=8, sampled at T = 0.7 with
    top-p: the run completes and a resumed one gives the unbroken run's metrics."""
    from rlvr.models import qwen2_shaped

    model, tokenizer = qwen2_shaped(hidden_size=64, num_layers=2)
    model.save_pretrained(tmp_path / "qwen2")
    tokenizer.save_pretrained(tmp_path / "qwen2")
    unbroken, resumed = unbroken_and_resumed(tmp_path, model=str(tmp_path / "qwen2"), lora={"r": 8},
                                             max_new_tokens=6, num_prompts=4, group_size=4, temperature=0.7,
                                             top_p=0.9)
    assert [r["step"] for r in resumed] == [0, 1, 2, 3, 4] and resumed == unbroken
    assert all(r["logprob_mismatch"] < 1e-5 for r in resumed if "logprob_mismatch" in r)


def test_the_warm_start_trains_the_base_and_rl_the_adapters(tmp_path):
    trainer = Trainer(easy_config(tmp_path, env="rlvr/Arithmetic-v0", lora=LORA, warmstart_steps=3, steps=1))
    base_before = {k: v.clone() for k, v in base_state_dict(trainer.model, merged=False).items()}
    trainer.out.mkdir(parents=True)
    trainer._warmstart()
    changed = [k for k, v in base_state_dict(trainer.model, merged=False).items() if not torch.equal(v, base_before[k])]
    assert changed
    assert all(not p.requires_grad for n, p in trainer.model.named_parameters() if "lora_" not in n)
    assert all(p.abs().sum() == 0 for n, p in trainer.model.named_parameters() if "lora_B" in n)


def test_rlvr_save_and_eval_read_a_lora_checkpoint(tmp_path, capsys):
    run = tmp_path / "run"
    Trainer(easy_config(tmp_path, steps=2, lora=LORA, lr=2e-2)).train()
    adapter = run / "checkpoint/model"
    assert cli_main(["save", str(adapter), str(tmp_path / "merged")]) == 0
    merged, tokenizer = load_policy(str(tmp_path / "merged"))
    assert not hasattr(merged, "peft_config") and json.loads((tmp_path / "merged/config.json").read_text())
    adapted, _ = load_policy(str(adapter))
    batch = some_batch(tokenizer)
    with torch.no_grad():
        torch.testing.assert_close(token_logprobs(merged, batch)[0], token_logprobs(adapted, batch)[0], atol=1e-5,
                                   rtol=0)
    capsys.readouterr()
    assert cli_main(["eval", "--model", str(adapter), "--env", "rlvr/Arithmetic-v0", "eval_problems=4",
                     "eval_k=1", "warmstart_steps=0"]) == 0
    assert "eval/pass@1" in json.loads(capsys.readouterr().out)


def test_lora_options_that_match_nothing_or_do_not_exist_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match=r"match no module of LlamaForCausalLM; its linear layers are named "
                                         r"\['down_proj', 'gate_proj', 'k_proj', 'lm_head'"):
        Trainer(easy_config(tmp_path, lora={"r": 4, "target_modules": ["qkv"]}))
    with pytest.raises(ValueError, match=r"unknown LoRA option\(s\) \['rank'\]"):
        Trainer(easy_config(tmp_path, lora={"rank": 4}))
