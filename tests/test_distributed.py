"""Scale-out: the Ray verifier executor agrees with the process pool and survives a killed worker, the Ray rollout
engine matches the local engine and follows weight syncs, and a 2-rank gloo learner computes the single-process
loss and gradient for token-mean (DAPO) and seq-mean-token-mean (GRPO) losses with unequal lengths per rank."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from conftest import free_port, torchrun_train

from rlvr.types import Completion, Group, Problem, Verdict
from rlvr.verifiers import VerifierPool, make_executor
from rlvr.verifiers.base import SerialExecutor

if TYPE_CHECKING:
    import torch

    from rlvr.trainer import TrainConfig, Trainer

# Ray workers import this module to unpickle its verifier: torch and the trainer are imported inside the tests
# that use them, so that a worker starts in a fraction of a second.
ray = pytest.importorskip("ray")



def _first_time(marker: str) -> bool:
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
        return True
    except FileExistsError:
        return False


@dataclass
class Scripted:
    """Reward = text length; 'crash' kills its worker process, 'hang' outlives any deadline, 'raise' raises, and
    'kill-host' kills the process hosting the pool (the Ray actor): every time, or only once per `marker` file."""

    marker: str | None = None

    def __call__(self, problem: Problem, completion: Completion) -> Verdict:
        text = completion.text
        if text == "crash":
            os._exit(3)
        if text == "hang":
            time.sleep(600)
        if text == "raise":
            raise ValueError("bad input")
        if text == "kill-host" and (self.marker is None or _first_time(self.marker)):
            os.kill(os.getppid(), signal.SIGKILL)
            time.sleep(600)
        return Verdict(float(len(text)), len(text) % 2 == 0, extracted=f"{problem.id}:{text}")


def items(texts: list[str]) -> list[tuple[Problem, Completion]]:
    return [(Problem(f"p{i}", "q"), Completion(t)) for i, t in enumerate(texts)]


def test_ray_executor_gives_the_process_pools_verdicts(ray_cluster):
    texts = ["x" * (i % 7) for i in range(40)]
    texts[3], texts[17], texts[30] = "crash", "raise", "hang"
    batch = items(texts)
    with VerifierPool(num_workers=2, timeout=1.0, chunk_size=4, preload=()) as pool:
        want = pool.map(Scripted(), batch)
    with make_executor("ray", num_workers=2, timeout=1.0, chunk_size=4, preload=()) as executor:
        assert len(set(executor.worker_pids())) == 2
        got = executor.map(Scripted(), batch)
    assert got == want
    assert want[0] == Verdict(0.0, True, extracted="p0:")
    assert want[3].error.startswith("crash:") and want[17].error.startswith("exception:")
    assert want[30].error.startswith("timeout:")


def test_a_killed_ray_worker_is_replaced_and_the_batch_completes(ray_cluster, tmp_path):
    marker = str(tmp_path / "killed-once")
    texts = ["y" * (i % 5) for i in range(24)]
    texts[9] = "kill-host"
    batch = items(texts)
    with make_executor("ray", num_workers=2, timeout=5.0, chunk_size=4, preload=()) as executor:
        before = set(executor.worker_pids())
        got = executor.map(Scripted(marker), batch)
        after = set(executor.worker_pids())
    assert os.path.exists(marker)  # an actor really was killed mid-batch
    assert len(before & after) == 1 and len(after) == 2  # ... and replaced
    assert got == SerialExecutor().map(Scripted(marker), batch)  # every item scored, the victim's retried


def test_an_item_that_kills_its_ray_worker_every_time_gets_a_crash_verdict(ray_cluster):
    texts = ["z" * (i % 3) for i in range(8)]
    texts[5] = "kill-host"
    with make_executor("ray", num_workers=2, timeout=5.0, chunk_size=4, preload=()) as executor:
        got = executor.map(Scripted(), items(texts))
    assert got[5].error.startswith("crash: Ray worker died") and got[5].reward == 0.0
    others = [v for i, v in enumerate(got) if i != 5]
    assert others == [Scripted()(p, c) for i, (p, c) in enumerate(items(texts)) if i != 5]


def test_ray_executor_without_ray_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(ImportError, match=r"rlvr\[ray\]"):
        make_executor("ray")


def same(a: list[list[Completion]], b: list[list[Completion]]) -> bool:
    """Equal token ids and finish reasons, and logprobs equal up to float noise, prompt by prompt."""
    pairs = [(x, y) for ga, gb in zip(a, b, strict=True) for x, y in zip(ga, gb, strict=True)]
    return all(x.token_ids == y.token_ids and x.finish_reason == y.finish_reason
               and max(abs(p - q) for p, q in zip(x.logprobs, y.logprobs)) < 1e-4 for x, y in pairs)


def test_ray_engine_matches_the_local_engine_and_follows_weight_syncs(ray_cluster):
    import torch

    from rlvr.models import load_policy
    from rlvr.rollout.base import Sampling
    from rlvr.rollout.hf import HFEngine
    from rlvr.rollout.ray_engine import RayEngine

    torch.set_num_threads(1)
    model, tokenizer = load_policy("tiny")
    local = HFEngine(model, tokenizer)
    prompts = ["1+2=", "7*3=", "9-4=", "12+5=", "8+8="]
    greedy = Sampling(max_new_tokens=5, temperature=0.0)
    engine = RayEngine.hf("tiny", model, num_workers=2)
    try:
        before = engine.generate(prompts, 1, greedy)
        assert same(before, local.generate(prompts, 1, greedy))  # same completions, in prompt order
        sampled = engine.generate(prompts, 3, Sampling(max_new_tokens=5, temperature=1.0))
        assert [len(g) for g in sampled] == [3] * len(prompts)
        for c in (c for g in sampled for c in g):
            assert 1 <= len(c.token_ids) <= 5 and len(c.logprobs) == len(c.token_ids)
            assert all(lp <= 0 for lp in c.logprobs) and c.text == tokenizer.decode(c.token_ids,
                                                                                     skip_special_tokens=True)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p) * 0.5)
        assert same(engine.generate(prompts, 1, greedy), before)  # the actors still hold the old weights
        engine.sync_weights(model)
        after = engine.generate(prompts, 1, greedy)
        assert not same(after, before) and same(after, local.generate(prompts, 1, greedy))
    finally:
        engine.close()


def test_trainer_rolls_out_and_verifies_on_ray(ray_cluster, tmp_path):
    from rlvr.trainer import Trainer

    cfg = learner_config(str(tmp_path), "grpo")
    cfg.engine, cfg.engine_workers, cfg.executor = "ray-hf", 1, "ray"
    cfg.num_prompts, cfg.steps, cfg.eval_every, cfg.save_every = 4, 1, 0, 0
    trainer = Trainer(cfg)
    try:
        [record] = trainer.train()
        problems = trainer.eval_set[:3]
        groups = trainer.collector.rollout(problems, 2, trainer.sampling)
    finally:
        trainer.engine.close()
        trainer.executor.close()
    assert record["gen/groups_kept"] == 4 and "pg_loss" in record
    assert [g.problem for g in groups] == problems and all(len(g) == 2 for g in groups)
    local = SerialExecutor().map(trainer.eval_env.verifier, [(g.problem, c) for g in groups for c in g.completions])
    assert [v for g in groups for v in g.verdicts] == local


# -- the learner under torch.distributed ---------------------------------------------------------------------

ALGOS = ("dapo", "grpo")  # token-mean, and seq-mean-token-mean with a KL term


def test_async_rollouts_generate_on_ray_actors_of_the_learners_cluster(ray_cluster, tmp_path):
    """With async rollouts the worker process builds the Ray engine, joining the cluster the learner is on."""
    from rlvr.trainer import Trainer

    cfg = learner_config(str(tmp_path), "grpo")
    cfg.engine, cfg.engine_workers, cfg.async_rollouts = "ray-hf", 1, 1
    cfg.num_prompts, cfg.steps, cfg.eval_every, cfg.save_every = 4, 3, 3, 0
    records = Trainer(cfg).train()
    assert [r["async/staleness"] for r in records] == [0.0, 1.0, 1.0]
    assert "eval/pass@1" in records[-1] and all(r["gen/groups_kept"] == 4 for r in records)


@pytest.mark.parametrize("k", [0, 1])
def test_a_run_on_ray_engines_resumes_exactly(ray_cluster, tmp_path, k):
    """The actors sample with seeds drawn from the learner's (or the rollout worker's) checkpointed stream."""
    from test_trainer import unbroken_and_resumed

    unbroken, resumed = unbroken_and_resumed(tmp_path, engine="ray-hf", engine_workers=2, async_rollouts=k)
    assert [r["step"] for r in resumed] == [0, 1, 2, 3, 4]
    assert resumed == unbroken


def learner_config(out_dir: str, algo: str, strategy: str = "ddp", lora: dict | None = None) -> TrainConfig:
    from rlvr.trainer import TrainConfig

    return TrainConfig(algo=algo, out_dir=out_dir, warmstart_steps=0, eval_problems=4, progress=False,
                       group_size=4, max_new_tokens=8, max_grad_norm=1e9, strategy=strategy, lora=lora or {})


def fixed_groups(tokenizer, source) -> list[Group]:
    """Five groups of four: the first three (rank 0's) with long completions, the rest short; one masked row."""
    import numpy as np

    rng = np.random.default_rng(0)
    digits = [tokenizer.convert_tokens_to_ids(str(d)) for d in range(10)]
    groups = []
    for k in range(5):
        lengths = rng.integers(5, 9, size=4) if k < 3 else rng.integers(1, 3, size=4)
        comps = [Completion("", [int(t) for t in rng.choice(digits, n)], [0.0] * int(n)) for n in lengths]
        verdicts = [Verdict(float(r), bool(r)) for r in [1, 0, k % 2, 1 - k % 2]]
        groups.append(Group(source.sample(rng), comps, verdicts))
    groups[1].verdicts[2].mask = True
    return groups


def sgd_update(trainer: Trainer, groups: list[Group]) -> tuple[dict[str, float], list[torch.Tensor]]:
    """One update with SGD at lr 1 (unclipped), so each parameter moves by exactly minus its gradient."""
    import torch

    trainer.optimizer = torch.optim.SGD(trainer.model.parameters(), lr=1.0)
    trainer.scheduler = torch.optim.lr_scheduler.LambdaLR(trainer.optimizer, lambda _: 1.0)
    before = [p.detach().clone() for p in trainer.model.parameters()]
    metrics = trainer.update(groups)
    steps = [b - p.detach() for b, p in zip(before, trainer.model.parameters())]
    return metrics, [s.full_tensor() if hasattr(s, "full_tensor") else s for s in steps]  # FSDP: gather shards


def _rank_main(rank: int, world_size: int, port: int, out_dir: str, groups: list[Group], strategy: str,
               lora: dict) -> None:
    import torch

    from rlvr.distributed import DistributedTrainer

    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    results = {}
    for algo in ALGOS:
        trainer = DistributedTrainer(learner_config(out_dir, algo, strategy, lora))
        results[algo] = sgd_update(trainer, groups)
        if strategy == "fsdp":  # rank 0's whole copy, which its engine generates with, follows the shards
            local = sum(p.to_local().numel() for p in trainer.model.parameters())
            assert local < 0.6 * sum(p.numel() for p in trainer.model.parameters())  # each rank holds ~half
            whole = trainer.whole_state(trainer.model)
            if rank == 0:
                for name, value in trainer.rollout_model.state_dict().items():
                    torch.testing.assert_close(value, whole[name], rtol=0, atol=0)
    torch.save(results, Path(out_dir) / f"rank{rank}.pt")
    torch.distributed.destroy_process_group()


def test_shard_groups_keeps_groups_whole_and_pads_short_shards():
    from rlvr.distributed import shard_groups

    groups = [Group(Problem(f"p{i}", "q"), [Completion("a")] * 2, [Verdict(1.0, True)] * 2) for i in range(5)]
    shards = [shard_groups(groups, r, 2) for r in range(2)]
    assert shards[0] == groups[:3] and shards[1][:2] == groups[3:]
    assert len(shards[1]) == 3 and all(v.mask for v in shards[1][2].verdicts)


@pytest.mark.parametrize("lora", [{}, {"r": 4, "alpha": 8, "target_modules": "all-linear"}], ids=["full", "lora"])
@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_gloo_ranks_give_the_single_process_loss_and_gradient(tmp_path, strategy, lora):
    """Also for a LoRA policy (adapters the only trainable weights, the reference with adapters disabled)."""
    import torch

    from rlvr.trainer import Trainer

    torch.set_num_threads(1)
    single = {}
    for algo in ALGOS:
        trainer = Trainer(learner_config(str(tmp_path / "single"), algo, lora=lora))
        groups = fixed_groups(trainer.tokenizer, trainer.env.source)
        single[algo] = sgd_update(trainer, groups)
    tokens = [sum(len(c.token_ids) for g in shard for c in g.completions) for shard in (groups[:3], groups[3:])]
    assert tokens[0] > 2 * tokens[1]  # unequal lengths: a per-rank normalisation would get a different answer
    torch.multiprocessing.spawn(_rank_main, args=(2, free_port(), str(tmp_path), groups, strategy, lora), nprocs=2)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]
    for algo in ALGOS:
        want_metrics, want_grads = single[algo]
        for metrics, grads in (ranks[0][algo], ranks[1][algo]):
            for key in ("pg_loss", "kl_loss", "grad_norm"):
                assert metrics[key] == pytest.approx(want_metrics[key], rel=1e-5, abs=1e-8), (algo, key)
            for got, want in zip(grads, want_grads):  # float32: summation order moves an element by up to
                # an ulp of the partial sums (~1e-7 where they are ~1), so the bound scales with the tensor
                torch.testing.assert_close(got, want, rtol=1e-4, atol=max(1e-7, 1e-4 * float(want.abs().max())))
        assert any(g.abs().max() > 0 for g in want_grads)


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_rlvr_train_runs_under_torchrun(tmp_path, strategy):
    out = tmp_path / "run"
    args = ["--out-dir", str(out), "--algo", "grpo", "num_prompts=4", "group_size=4", "max_new_tokens=3",
            "warmstart_steps=2", "eval_problems=4", "eval_every=2", "save_every=0", "progress=False",
            f"strategy={strategy}"]
    stdout = torchrun_train(["--steps", "2", *args], tmp_path)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [0, 0, 1, 2]  # written once, by rank 0
    assert "eval/pass@1" in records[1] and "eval/pass@1" in records[-1] and "pg_loss" in records[-1]
    assert (out / "checkpoint" / "state.pt").exists() and (out / "checkpoint" / "ref").exists()  # GRPO's KL
    assert stdout.count("held-out pass@1") == 1
    if strategy == "fsdp":  # the gathered checkpoint resumes into shards
        torchrun_train(["--steps", "3", "--resume", *args], tmp_path)
        records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        assert [r["step"] for r in records] == [0, 0, 1, 2, 3] and records[-1]["kl_ref"] >= 0
