"""Asynchronous rollouts (`async_rollouts=k`): the fixed schedule (batch t sampled with the weights of step
max(0, t-1-k)), staleness recorded per sample and never above k, the behaviour correction always on, dynamic
sampling still filling batches, evaluation in the worker, exact resume (in-flight batches saved), a clean stop on
SIGTERM, and a worker's failure surfacing as an error that names it."""

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from rlvr.rollout.async_worker import batches_of, weights_version
from rlvr.trainer import TrainConfig, Trainer
from test_trainer import easy_config, unbroken_and_resumed

torch.set_num_threads(1)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_every_batch_is_generated_once_with_the_weights_its_schedule_names(k):
    made = {t: v for v in range(40) for t in batches_of(v, k)}
    assert sorted(made) == list(range(1, 40 + k + 1))
    assert all(made[t] == weights_version(t, k) == max(0, t - 1 - k) for t in made)
    assert all(0 <= (t - 1) - made[t] <= k for t in made)  # staleness: updates between sampling and learning


@pytest.mark.parametrize("k", [1, 2])
def test_async_runs_learn_with_staleness_exactly_as_scheduled(tmp_path, k):
    records = Trainer(easy_config(tmp_path, async_rollouts=k, steps=10, eval_every=5)).train()
    assert [r["step"] for r in records] == list(range(1, 11))
    # every sample of batch t is min(t-1, k) updates old: the worker never runs further ahead nor lags behind
    assert [r["async/staleness"] for r in records] == [min(t - 1, k) for t in range(1, 11)]
    assert [r["async/staleness_max"] for r in records] == [min(t - 1, k) for t in range(1, 11)]
    assert all("is/weight_mean" in r for r in records)  # stale samples are corrected (token_truncate by default)
    assert "eval/pass@1" in records[4] and "eval/pass@1" in records[9]
    untrained, final = records[0]["reward"], sum(r["reward"] for r in records[-3:]) / 3
    assert untrained < 0.4 and final > untrained + 0.25, (untrained, final)


class RecordingTrainer(Trainer):
    """Keeps the weights of every step and the batches it trained on, to check which weights sampled them."""

    def __init__(self, cfg):
        super().__init__(cfg)
        self.weights = {}  # step -> the policy's state after that many updates
        self.batches = {}  # batch number -> its groups

    def next_batch(self):
        self.weights.setdefault(self.step, {k: v.clone() for k, v in self.model.state_dict().items()})
        groups, stats = super().next_batch()
        self.batches[self.step + 1] = groups
        return groups, stats


@pytest.mark.parametrize("k", [1, 2])
def test_each_batch_was_sampled_by_the_weights_its_schedule_names(tmp_path, k):
    """The engine's log-probs of batch t are those of the weights after step max(0, t-1-k), and of no later ones:
    recomputed with each step's weights, the match is exact (float32 hf) only at the scheduled version."""
    from rlvr.batch import build_batch

    trainer = RecordingTrainer(easy_config(tmp_path, algo="grpo", async_rollouts=k, steps=6, lr=3e-2))
    trainer.train()
    for t, groups in trainer.batches.items():
        completions = [c for g in groups for c in g.completions]
        prompts = [trainer.collector.first_prompt(g.problem) for g in groups for _ in g.completions]
        batch = build_batch(trainer.tokenizer, prompts, completions, add_special_tokens=trainer.add_special_tokens)
        mu, mask = batch.engine_logprobs(completions), batch.completion_mask
        gaps = {}
        for version, state in trainer.weights.items():
            trainer.model.load_state_dict(state)
            logp, _ = trainer.batch_logprobs(trainer.model, batch)
            gaps[version] = float(((logp - mu).abs() * mask).max())
        scheduled = max(0, t - 1 - k)
        assert gaps[scheduled] < 1e-4, (t, gaps)
        assert all(gap > 1e-3 for v, gap in gaps.items() if v != scheduled), (t, gaps)
        assert {c.policy_version for c in completions} == {scheduled}


def test_the_correction_mode_can_be_chosen_and_weighs_stale_samples(tmp_path):
    records = Trainer(easy_config(tmp_path, async_rollouts=1, steps=4, is_correction="sequence_mask")).train()
    assert all(0 <= r["is/masked_frac"] <= 1 for r in records)
    # from the second step on the samples are one update old: the learner's proximal policy and mu differ
    assert records[0]["mismatch/k3"] < 1e-6 < max(r["mismatch/k3"] for r in records[1:])


def test_dynamic_sampling_still_fills_every_batch(tmp_path):
    records = Trainer(easy_config(tmp_path, async_rollouts=1, steps=4, algo="dapo",
                                  algo_kwargs={"max_gen_rounds": 20})).train()
    assert all(r["gen/groups_kept"] == 8 for r in records)
    assert any(r["gen/rounds"] > 1 for r in records)  # all-equal groups were dropped and refilled


@pytest.mark.parametrize("k", [0, 1, 2])
def test_an_async_run_resumes_exactly(tmp_path, k):
    unbroken, resumed = unbroken_and_resumed(tmp_path, async_rollouts=k)
    assert [r["step"] for r in resumed] == [0, 1, 2, 3, 4]
    assert resumed == unbroken
    if k:
        assert [r["async/staleness"] for r in resumed[1:]] == [min(t - 1, k) for t in range(1, 5)]


def test_a_multi_turn_async_run_resumes_exactly(tmp_path):
    from test_multiturn_trainer import GUESS

    unbroken, resumed = unbroken_and_resumed(tmp_path, async_rollouts=1, **GUESS)
    assert resumed == unbroken and all(r["episode/turns"] >= 1 for r in resumed if "reward" in r)


def test_a_checkpoint_written_with_another_k_is_refused(tmp_path):
    Trainer(easy_config(tmp_path, async_rollouts=1, steps=2)).train()
    with pytest.raises(ValueError, match="written with async_rollouts=1: resume with that"):
        Trainer(easy_config(tmp_path, async_rollouts=2, steps=3)).train(resume=True)


@pytest.mark.parametrize("signum, group", [(signal.SIGTERM, False), (signal.SIGINT, True)],
                         ids=["SIGTERM to the learner", "Ctrl-C: SIGINT to the process group"])
def test_a_signal_stops_an_async_run_with_a_checkpoint_of_every_finished_step(tmp_path, signum, group):
    """The learner finishes its step and saves, in-flight batches included; the worker ignores SIGINT (a Ctrl-C
    reaches the whole group) and stops with the learner."""
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "rlvr.cli", "train", "--out-dir", str(out), "steps=100000",
                             "save_every=0", "eval_every=0", "progress=False", "num_prompts=2", "group_size=2",
                             "warmstart_steps=0", "threads=1", "async_rollouts=2"], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": os.getcwd()})
    metrics = out / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not metrics.exists() or len(metrics.read_text().splitlines()) < 3):
        time.sleep(0.2)
    if group:
        os.killpg(proc.pid, signum)
    else:
        proc.send_signal(signum)
    assert proc.wait(timeout=120) == 0, proc.stderr.read().decode()[-3000:]
    state = torch.load(out / "checkpoint/state.pt", weights_only=False)
    steps_logged = max(json.loads(line)["step"] for line in metrics.read_text().splitlines())
    assert state["step"] == steps_logged >= 2
    in_flight = state["rollouts"]["in_flight"]
    assert [b.t for b in in_flight] == [state["step"] + 1, state["step"] + 2]
    assert all(c.policy_version == max(0, b.t - 3) for b in in_flight for g in b.groups for c in g.completions)


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here")
def test_a_failing_worker_is_an_error_that_says_why(tmp_path):
    with pytest.raises(RuntimeError, match="(?s)the rollout worker failed.*needs vLLM"):
        Trainer(easy_config(tmp_path, async_rollouts=1, steps=2, engine="vllm")).train()


def test_bad_settings_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="async_rollouts must be >= 0"):
        TrainConfig(async_rollouts=-1)
    trainer = Trainer(easy_config(tmp_path, async_rollouts=1))
    assert trainer.engine is None  # the worker, started by train(), owns the engine
    with pytest.raises(RuntimeError, match="the rollout worker evaluates, during train"):
        trainer.evaluate()
