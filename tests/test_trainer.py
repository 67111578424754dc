import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

import pytest
import numpy as np
import torch

import rlvr
from rlvr import algorithms
from rlvr.batch import build_batch, shared_prompt_hidden_states, token_logprobs
from rlvr.cli import main as cli_main
from rlvr.envs.tasks.arithmetic import Arithmetic
from rlvr.models import char_tokenizer, load_policy, tiny_model
from rlvr.rollout.base import Sampling
from rlvr.rollout.collector import refill_size
from rlvr.rollout.hf import HFEngine
from rlvr.trainer import TrainConfig, Trainer
from rlvr.types import Completion, Problem, Verdict

torch.set_num_threads(1)


@dataclass
class DigitFirst:
    """An easy reward a from-scratch model can learn in a few steps: the completion starts with a digit."""

    name: str = "digit_first"

    def __call__(self, problem: Problem, completion: Completion) -> Verdict:
        ok = completion.text[:1].isdigit()
        return Verdict(float(ok), ok)


def digit_first_env(render_mode: str | None = None, **kwargs):
    """Arithmetic prompts rewarded for starting the answer with a digit (a test task; check_env-clean, since
    test_envs checks every registered env)."""
    return rlvr.PromptEnv(Arithmetic(1, **kwargs), verifier=DigitFirst(), render_mode=render_mode)


rlvr.register("rlvrtest/DigitFirst-v0", digit_first_env)


def easy_config(tmp_path, **overrides) -> TrainConfig:
    values = dict(env="rlvrtest/DigitFirst-v0", env_kwargs={}, steps=12, num_prompts=8, group_size=8,
                  max_new_tokens=2, lr=1e-2, warmup_steps=1, warmstart_steps=0, eval_every=0, eval_problems=8, save_every=0,
                  out_dir=str(tmp_path / "run"), progress=False)
    values.update(overrides)
    return TrainConfig(**values)


@pytest.mark.parametrize("algo", algorithms.names())
def test_every_algorithm_improves_reward_on_an_easy_task(tmp_path, algo):
    records = Trainer(easy_config(tmp_path, algo=algo)).train()
    untrained = records[0]["reward"]  # sampled before the first update
    final = sum(r["reward"] for r in records[-3:]) / 3
    assert untrained < 0.4 and final > untrained + 0.25, (untrained, final)


def _comparable(path):
    """A run's records without its timings."""
    return [{k: v for k, v in json.loads(line).items() if not k.startswith("time/") and k != "tokens_per_s"}
            for line in open(path)]


def unbroken_and_resumed(tmp_path, **overrides) -> tuple[list[dict], list[dict]]:
    """The metrics of a 4-step GRPO run (KL on, saved every 2 steps), and of the same run stopped after 2 steps
    and resumed (in tmp_path/b/run)."""
    base = dict(algo="grpo", steps=4, eval_every=2, save_every=2, algo_kwargs={"beta": 0.04}, **overrides)
    for where, values, resume in (("a", base, False), ("b", {**base, "steps": 2}, False), ("b", base, True)):
        with Trainer(easy_config(tmp_path / where, **values)) as trainer:  # closing stops its engine's workers
            trainer.train(resume=resume)
        del trainer  # gone before the next run builds its engine (vLLM's parallel state is global to a process)
    return _comparable(tmp_path / "a/run/metrics.jsonl"), _comparable(tmp_path / "b/run/metrics.jsonl")


def test_resume_gives_the_same_metrics_as_an_unbroken_run(tmp_path):
    unbroken, resumed = unbroken_and_resumed(tmp_path)
    assert [r["step"] for r in resumed] == [0, 1, 2, 3, 4]
    assert resumed == unbroken
    # TensorBoard holds the same curve as metrics.jsonl, without duplicates from the resumed run
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "b/run/tensorboard"))
    events.Reload()
    assert [(e.step, pytest.approx(e.value)) for e in events.Scalars("reward")] == [
        (r["step"], r["reward"]) for r in resumed if "reward" in r]


def test_a_checkpoint_carries_the_cuda_generators(tmp_path, monkeypatch):
    """On a GPU, sampling draws from the CUDA generators: a checkpoint saves their states and a resume restores
    them (faked here: CI has no GPU)."""
    generators = {"state": [torch.tensor([7, 7], dtype=torch.uint8)]}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: generators["state"])
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda s: generators.update(state=s))
    trainer = Trainer(easy_config(tmp_path, steps=1, device="cpu"))
    trainer.train()
    generators["state"] = [torch.tensor([0], dtype=torch.uint8)]  # the generators move on after the save
    trainer.restore_sampling(trainer.read_checkpoint())
    assert [t.tolist() for t in generators["state"]] == [[7, 7]]


def test_resume_without_a_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint to resume from"):
        Trainer(easy_config(tmp_path)).train(resume=True)


def test_dynamic_sampling_keeps_only_mixed_groups_and_fills_the_batch(tmp_path):
    trainer = Trainer(easy_config(tmp_path, algo="dapo", algo_kwargs={"max_gen_rounds": 20}))
    groups, stats = trainer.collector.collect()
    assert len(groups) == 8 and stats["gen/groups_kept"] == 8
    assert all(0 < g.num_correct < len(g) for g in groups)
    assert 8 < stats["gen/groups_drawn"] <= 8 * stats["gen/rounds"] and stats["gen/rounds"] > 1
    assert stats["gen/groups_dropped"] == stats["gen/groups_drawn"] - 8


@pytest.mark.parametrize("kept, drawn, expected", [
    (0, 0, 32),  # the first round: a full batch
    (0, 32, 32),  # nothing kept yet: no keep rate to go by
    (24, 32, 14),  # 8 missing at keep rate 3/4: 8 * 4/3 * 1.25 = 13.3
    (1, 32, 32),  # at most a batch
    (31, 40, 2),  # one missing: 40/31 * 1.25 = 1.6
])
def test_a_refill_round_draws_the_missing_groups_over_the_keep_rate(kept, drawn, expected):
    assert refill_size(32, kept, drawn) == expected


def test_a_model_saved_to_disk_trains_through_the_model_path(tmp_path, capsys):
    model, tokenizer = load_policy("tiny")
    model.save_pretrained(tmp_path / "saved")
    tokenizer.save_pretrained(tmp_path / "saved")
    out = tmp_path / "run"
    code = cli_main(["train", "--model", str(tmp_path / "saved"), "--env", "rlvr/Arithmetic-v0", "--algo", "grpo",
                     "--out-dir", str(out), "steps=2", "num_prompts=2", "group_size=2", "max_new_tokens=3",
                     "eval_problems=4", "eval_every=2", "progress=False"])
    assert code == 0
    records = [json.loads(line) for line in open(out / "metrics.jsonl")]
    assert not any("warmstart/steps" in r for r in records)  # only the from-scratch "tiny" model is warm-started
    assert records[-1]["step"] == 2 and "eval/pass@1" in records[-1]
    assert (out / "checkpoint/model/config.json").exists() and (out / "plots/reward.png").exists()
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_policy(str(tmp_path))


def test_yaml_config_and_dotted_overrides(tmp_path):
    from rlvr.cli import build_parser, train_config

    (tmp_path / "run.yaml").write_text("algo: gspo\nsteps: 7\nalgo_kwargs:\n  eps_low: 0.001\n")
    args = build_parser().parse_args(["train", "--config", str(tmp_path / "run.yaml"), "algo_kwargs.eps_high=0.002",
                                      "env_kwargs.level=3"])
    cfg = train_config(args)
    assert (cfg.algo, cfg.steps, cfg.algo_kwargs, cfg.env_kwargs["level"]) == (
        "gspo", 7, {"eps_low": 0.001, "eps_high": 0.002}, 3)
    with pytest.raises(ValueError, match="unknown config keys"):
        train_config(build_parser().parse_args(["train", "stpes=3"]))


def test_sigterm_stops_cleanly_with_a_checkpoint(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "rlvr.cli", "train", "--out-dir", str(out), "steps=100000",
                             "save_every=0", "eval_every=0", "progress=False", "num_prompts=2", "group_size=2", "warmstart_steps=0",
                             "threads=1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONPATH": os.getcwd()})
    metrics = out / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not metrics.exists() or len(metrics.read_text().splitlines()) < 3):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    state = torch.load(out / "checkpoint/state.pt", weights_only=False)
    steps_logged = max(json.loads(line)["step"] for line in metrics.read_text().splitlines())
    assert state["step"] == steps_logged >= 2


def sgd_update_params(tmp_path, **overrides) -> torch.Tensor:
    """The parameters after one update on the first collected batch, with plain SGD at lr 1 (the parameter change is
    the clipped gradient itself, where Adam's first step would turn float round-off in near-zero gradients into
    +-lr)."""
    trainer = Trainer(easy_config(tmp_path, **overrides))
    trainer.optimizer = torch.optim.SGD(trainer.model.parameters(), lr=1.0)
    trainer.scheduler = torch.optim.lr_scheduler.LambdaLR(trainer.optimizer, lambda _: 1.0)
    groups, _ = trainer.collector.collect()
    trainer.update(groups)
    return torch.cat([p.detach().flatten() for p in trainer.model.parameters()])


@pytest.mark.parametrize("algo", ["dapo", "grpo", "gspo"])
@pytest.mark.parametrize("split", [{"micro_batch_size": 5}, {"micro_batch_tokens": 40}])
def test_micro_batches_match_one_full_batch_update(tmp_path, algo, split):
    """Micro-batches (by rows, or by a token budget with rows sorted by length) with whole-minibatch normalisers
    give the update of one full-batch step, also with old log-probs from a separate pass (two epochs)."""
    base = dict(algo=algo, algo_kwargs={"max_gen_rounds": 20} if algo == "dapo" else {})
    for epochs in (1, 2):
        whole = sgd_update_params(tmp_path / f"whole{epochs}", epochs=epochs, **base)
        split_up = sgd_update_params(tmp_path / f"split{epochs}", epochs=epochs, **base, **split)
        assert torch.allclose(whole, split_up, atol=1e-6)


def test_micro_batch_tokens_smaller_than_a_sequence_is_a_clear_error(tmp_path):
    trainer = Trainer(easy_config(tmp_path, micro_batch_tokens=4))
    groups, _ = trainer.collector.collect()
    with pytest.raises(ValueError, match="micro_batch_tokens=4 is smaller than one sequence"):
        trainer.update(groups)


def test_micro_batches_by_tokens_sort_rows_by_length():
    from rlvr.batch import micro_batches

    tokenizer = char_tokenizer()
    lengths = [1, 9, 2, 8, 3, 7]
    batch = build_batch(tokenizer, ["1+1="] * 6, [Completion("", [5] * n) for n in lengths])
    packs = micro_batches(batch, torch.arange(6), max_tokens=30)
    assert sorted(i for p in packs for i in p.tolist()) == list(range(6))
    for pack in packs:  # padded size as select() trims it
        assert batch.select(pack).input_ids.numel() <= 30
    assert [sorted(p.tolist()) for p in packs] == [[1, 3], [4, 5], [0, 2]]  # 13+12 / 11+8 / 7+6 tokens wide


def test_gradient_checkpointing_gives_the_same_update(tmp_path):
    """Recomputed activations change nothing, and the shared-prompt forward (whose KV cache transformers drops
    under checkpointing) falls back to the full forward for the passes that record gradients."""
    plain = sgd_update_params(tmp_path / "plain", algo="grpo", epochs=2)
    checkpointed = sgd_update_params(tmp_path / "ckpt", algo="grpo", epochs=2, gradient_checkpointing=True)
    assert torch.allclose(plain, checkpointed, atol=1e-6)


def test_logprob_mismatch_is_below_1e5_with_temperature_top_p_and_top_k(tmp_path):
    """Same weights, float32, hf engine, T = 0.7, top_p = 0.9, top_k = 50: the learner's log-probs are those of
    the distribution the engine sampled from, with old log-probs from the loss forward and from a separate pass."""
    for epochs in (1, 2):
        records = Trainer(easy_config(tmp_path / str(epochs), steps=3, max_new_tokens=6, temperature=0.7, top_p=0.9,
                                      top_k=50, epochs=epochs)).train()
        assert all(0 <= r["logprob_mismatch"] < 1e-5 for r in records), [r["logprob_mismatch"] for r in records]


@pytest.mark.parametrize("precision", [dict(mixed_precision="bf16"), dict(mixed_precision="fp16"),
                                       dict(dtype="bfloat16")])
def test_reduced_precision_runs_train_and_checkpoint(tmp_path, precision):
    """Autocast over float32 weights (float16 with a gradient scaler, whose state the checkpoint keeps), or a
    bfloat16 model: the run trains with finite losses."""
    trainer = Trainer(easy_config(tmp_path, steps=2, lr=1e-3, **precision))
    records = trainer.train()
    assert all(np.isfinite(r["pg_loss"]) and np.isfinite(r["grad_norm"]) for r in records)
    dtype = torch.bfloat16 if precision.get("dtype") == "bfloat16" else torch.float32
    assert all(p.dtype == dtype for p in trainer.model.parameters())
    scaler = torch.load(tmp_path / "run/checkpoint/state.pt", weights_only=False)["grad_scaler"]
    assert ("scale" in scaler) == (precision.get("mixed_precision") == "fp16")


def test_precision_options_the_device_cannot_honour_are_clear_errors(tmp_path, monkeypatch):
    from rlvr.models import resolve_dtype

    with pytest.raises(ValueError, match="dtype must be one of float32, bfloat16, float16, got 'float8'"):
        Trainer(easy_config(tmp_path, dtype="float8"))
    with pytest.raises(ValueError, match="over float32 weights; the model was loaded in torch.bfloat16"):
        Trainer(easy_config(tmp_path, dtype="bfloat16", mixed_precision="bf16"))
    with pytest.raises(ValueError, match="mixed_precision must be one of no, bf16, fp16"):
        Trainer(easy_config(tmp_path, mixed_precision="fp8"))
    with pytest.raises(ValueError, match="micro_batch_tokens must be >= 0"):
        easy_config(tmp_path, micro_batch_tokens=-1)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla V100")
    with pytest.raises(ValueError, match="Tesla V100 has no bfloat16 arithmetic"):
        resolve_dtype("bfloat16", "cuda")


@pytest.mark.parametrize("algo", ["grpo", "gspo", "cispo"])
def test_one_step_per_batch_reuses_the_loss_forward_for_the_old_logprobs(tmp_path, algo):
    """With one optimizer step per batch the trainer takes pi_old from the loss forward (detached) instead of a
    separate no-grad pass: same update and metrics as the two-pass procedure written out here."""
    trainer = Trainer(easy_config(tmp_path, algo=algo, micro_batch_size=5))
    groups, _ = trainer.collector.collect()
    model = trainer.model
    before = [p.detach().clone() for p in model.parameters()]

    # the two-pass step, from the definitions: pi_old by a no-grad forward, then the loss over the whole batch
    prompts = [trainer.collector.prompt_text(g.problem, trainer.env) for g in groups for _ in g.completions]
    batch = build_batch(trainer.tokenizer, prompts, [c for g in groups for c in g.completions])
    with torch.no_grad():
        old_logp, entropy = token_logprobs(model, batch, with_entropy=True)
        ref_logp = token_logprobs(trainer.reference(), batch)[0] if trainer.algo.beta > 0 else None
    mask = batch.completion_mask
    advantages = trainer.algo.advantages(torch.tensor([g.rewards for g in groups])).reshape(-1)
    logp, _ = token_logprobs(model, batch)
    loss, _ = trainer.algo.loss(logp, old_logp, ref_logp, advantages, mask,
                                num_tokens=float(mask.sum()), num_seqs=float((mask.sum(-1) > 0).sum()))
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), trainer.cfg.max_grad_norm)
    expected = [(b - p.grad).detach() for b, p in zip(before, model.parameters())]  # one SGD step, lr 1

    with torch.no_grad():
        for p, b in zip(model.parameters(), before):
            p.copy_(b)
    trainer.optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    trainer.scheduler = torch.optim.lr_scheduler.LambdaLR(trainer.optimizer, lambda _: 1.0)
    metrics = trainer.update(groups)
    for p, e in zip(model.parameters(), expected):
        assert torch.allclose(p, e, atol=1e-6)
    assert metrics["entropy"] == pytest.approx(float(entropy.sum() / mask.sum()), rel=1e-5)
    assert metrics["ratio_max"] == pytest.approx(1.0) and metrics["ratio_min"] == pytest.approx(1.0)


def test_shared_prompt_forward_equals_the_full_forward():
    """Each distinct prompt run once, its KV cache gathered per row: the same log-probs, entropies and gradients
    as the full forward, for shuffled rows, prompts of different lengths, empty completions and single tokens."""
    tokenizer = char_tokenizer()
    model = tiny_model(tokenizer, seed=5).double()
    rng = np.random.default_rng(0)
    prompts = ["1+2=", "13+24-7=", "9-9=", "100+1="]
    rows = [p for p in prompts for _ in range(3)] + ["7+7="]  # three groups of three, one prompt alone
    lengths = [0, 1, 5, 3, 8, 2, 1, 0, 6, 4, 4, 7, 1]
    completions = [Completion("", [int(t) for t in rng.integers(3, 90, n)]) for n in lengths]
    order = rng.permutation(len(rows))
    for width in (None, 1):  # all lengths, then every completion cut to one token (the cache is never used)
        comps = [Completion("", c.token_ids[:width] if width else c.token_ids) for c in completions]
        batch = build_batch(tokenizer, [rows[i] for i in order], [comps[i] for i in order])
        results = []
        for share in (False, True):
            model.zero_grad()
            logp, entropy = token_logprobs(model, batch, with_entropy=True, share_prompts=share)
            (logp * torch.linspace(0.5, 1.5, logp.numel()).reshape(logp.shape)).sum().backward()
            results.append((logp.detach(), entropy, [p.grad.clone() for p in model.parameters()]))
        (logp0, ent0, grads0), (logp1, ent1, grads1) = results
        torch.testing.assert_close(logp1, logp0, rtol=0, atol=1e-6)
        torch.testing.assert_close(ent1, ent0, rtol=0, atol=1e-6)
        for g1, g0 in zip(grads1, grads0):  # Llama's RMSNorm computes in float32 even in a float64 model
            torch.testing.assert_close(g1, g0, rtol=1e-5, atol=1e-5)
        assert (logp0 != 0).sum() == sum(min(n, width or n) for n in lengths)
    distinct = build_batch(tokenizer, prompts, completions[:len(prompts)])  # nothing to share: the full forward
    assert shared_prompt_hidden_states(model, distinct, torch.device("cpu")) is None


@pytest.mark.parametrize("temperature", [1.0, 0.0])
def test_generation_with_a_shared_prompt_prefill_matches_plain_generate(monkeypatch, temperature):
    """Prefilling each distinct prompt once and gathering its cache changes neither the sampled tokens (same
    seed) nor their log-probs, with left padding from prompts of different lengths."""
    tokenizer = char_tokenizer()
    model = tiny_model(tokenizer, seed=4).eval()
    engine = HFEngine(model, tokenizer)
    prompts, sampling = ["1+2=", "13+24-7=", "5="], Sampling(max_new_tokens=6, temperature=temperature)
    results = []
    for share in (True, False):
        if not share:
            monkeypatch.setattr("rlvr.rollout.hf.prefill_once", lambda *args: None)
        torch.manual_seed(0)
        results.append(engine.generate(prompts, 4, sampling))
    shared, plain = results
    for group_a, group_b in zip(shared, plain):
        for a, b in zip(group_a, group_b):
            assert a.token_ids == b.token_ids and a.finish_reason == b.finish_reason
            assert np.allclose(a.logprobs, b.logprobs, atol=1e-4)


def test_train_config_imports_without_torch():
    code = "import sys, rlvr.config; assert 'torch' not in sys.modules, 'torch was imported'"
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": os.getcwd()})


def test_a_trainer_closes_the_workers_it_started(tmp_path):
    """`with Trainer(...)` stops its verifier pool's worker processes at the end of the block."""
    from conftest import descendants

    before = descendants(os.getpid())
    with Trainer(easy_config(tmp_path, steps=1, executor="process")) as trainer:
        trainer.train()
        assert descendants(os.getpid()) - before  # the pool's workers
    deadline = time.time() + 10
    while descendants(os.getpid()) - before and time.time() < deadline:
        time.sleep(0.1)
    assert not descendants(os.getpid()) - before


def test_missing_tensorboard_is_not_written_into_the_config(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith("torch.utils.tensorboard"):
            raise ImportError("no tensorboard")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    trainer = Trainer(easy_config(tmp_path, steps=1))
    trainer.train()
    assert trainer.cfg.report_to == ["tensorboard"] and trainer.metrics.tensorboard is False
    assert (tmp_path / "run/metrics.jsonl").exists() and not (tmp_path / "run/tensorboard").exists()


def test_a_malformed_override_names_where_it_came_from():
    from rlvr.cli import build_parser, train_config

    with pytest.raises(SystemExit, match="a KEY=VALUE override expects key=value, got 'steps'"):
        train_config(build_parser().parse_args(["train", "steps"]))


def test_the_warm_start_shows_its_progress(tmp_path, capsys):
    trainer = Trainer(easy_config(tmp_path, env="rlvr/Arithmetic-v0", warmstart_steps=3, steps=0, progress=True))
    trainer.train()
    err = capsys.readouterr().err
    assert "rlvr warm-start (supervised, on gold answers, before RL)" in err and "3/3" in err


def test_engines_come_from_one_factory(tmp_path):
    """`rlvr.rollout.make_engine` builds every engine; an unknown name lists the known ones; an engine with a model
    of its own is pointed at `--model`, or at a saved copy of a policy no directory holds (the built-in model, or a
    LoRA policy merged)."""
    from rlvr.rollout import make_engine
    from rlvr.rollout.factory import model_dir

    model, tokenizer = load_policy("tiny")
    engine = make_engine("hf", model, tokenizer, model="tiny", save_dir=tmp_path, batch_tokens=100)
    assert isinstance(engine, HFEngine) and engine.batch_tokens == 100 and engine.model is model
    with pytest.raises(ValueError, match="engine must be one of 'hf', 'vllm', 'ray-hf', 'ray-vllm', got 'sglang'"):
        make_engine("sglang", model, tokenizer, model="tiny", save_dir=tmp_path)
    assert model_dir(model, tokenizer, "org/some-model", tmp_path / "a") == "org/some-model"
    assert model_dir(model, tokenizer, "tiny", tmp_path / "b") == str(tmp_path / "b")
    assert load_policy(str(tmp_path / "b"))[0].state_dict().keys() == model.state_dict().keys()
    with pytest.raises(ValueError, match="engine must be one of"):
        Trainer(easy_config(tmp_path, engine="sglang"))


def test_the_trainer_runs_torch_deterministically_and_gives_the_setting_back(tmp_path):
    """Exact resume needs bitwise-repeatable steps on any number of threads. The learner's backward of indexing is
    index_put with accumulation, which on CPU sums duplicate indices in thread order unless torch runs its
    deterministic algorithms; the trainer turns them on (deterministic=True, the default) and restores the
    process's setting when it closes."""
    torch.use_deterministic_algorithms(False)  # a trainer an earlier test did not close left it on
    threads = torch.get_num_threads()
    g = torch.Generator().manual_seed(0)
    index, values = torch.randint(0, 64, (4096,), generator=g), torch.randn(4096, 2048, generator=g)
    with Trainer(easy_config(tmp_path, threads=2)) as trainer:
        assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
        sums = {torch.zeros(64, 2048).index_put((index,), values, accumulate=True).numpy().tobytes()
                for _ in range(10)}
        assert len(sums) == 1
        trainer.train_step()
    assert not torch.are_deterministic_algorithms_enabled()
    with Trainer(easy_config(tmp_path, deterministic=False)):
        assert not torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(threads)
