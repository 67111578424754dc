"""Asynchronous rollouts (`async_rollouts=k`): a worker process owns the engine and collects training batches ahead of
the learner, which trains on batch t while the worker already generates t+1 ... t+k.

The schedule is fixed, not timing-dependent: batch t is generated with the weights of learner step
v(t) = max(0, t - 1 - k), so its staleness is min(t - 1, k) <= k, and a run is reproducible from its seed. The learner
pushes its weights after every step; the worker loads version v only when the next batch needs it (or an evaluation
of step v was asked for). Exact resume saves what is in flight: a checkpoint after step s holds batches s+1 ... s+k
(the worker is waited for) and the worker's random streams after the last of them, from which a new worker continues.

The worker builds its engine (hf over its own copy of the policy, vllm, or Ray actors) with the run's options, its
own verifier executor and envs; CPU threads are split between it and the learner."""

from __future__ import annotations

import copy
import os
import queue
import random
import signal
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

import gymnasium
import numpy as np
import torch
import torch.multiprocessing as mp
from transformers import PreTrainedTokenizerBase

from rlvr import algorithms
from rlvr.checkpoint import random_states, restore_random_states
from rlvr.config import TrainConfig
from rlvr.precision import Precision
from rlvr.rollout.collector import Collector
from rlvr.rollout.factory import make_engine
from rlvr.types import Completion, Group
from rlvr.verifiers import make_executor

POLL_S = 1.0  # how often a blocked side checks that the other is still alive


def weights_version(batch: int, k: int) -> int:
    """v(t): the learner step whose weights generate batch t (1-based) under `async_rollouts=k`."""
    return max(0, batch - 1 - k)


def batches_of(version: int, k: int) -> range:
    """The batches generated with the weights of step `version`: 1 ... k+1 for the initial weights, else v+k+1."""
    return range(1, k + 2) if version == 0 else range(version + k + 1, version + k + 2)


def ray_address() -> str | None:
    """The address of the Ray cluster this process has joined, if it has."""
    ray = sys.modules.get("ray")
    return ray.get_runtime_context().gcs_address if ray is not None and ray.is_initialized() else None


def eval_seed(seed: int, step: int) -> int:
    """The seed of the held-out evaluation after `step` (its own stream: evaluating never moves the training one)."""
    return int(np.random.SeedSequence([seed, step]).generate_state(1)[0])


def staleness(completions: list[Completion], step: int, k: int) -> dict[str, float]:
    """How many updates old the weights that sampled `completions` are at learner step `step`; an error outside
    0..k, which the schedule rules out."""
    lag = [step - c.policy_version for c in completions]
    if max(lag) > k or min(lag) < 0:
        raise RuntimeError(f"step {step}: samples {min(lag)}..{max(lag)} updates old, outside 0..{k} (async_rollouts)")
    return {"async/staleness": float(np.mean(lag)), "async/staleness_max": float(max(lag))}


@dataclass
class Batch:
    """One collected training batch: number t (1-based), its groups and statistics, and the worker's random
    streams after it (what a resumed worker continues from)."""

    t: int
    groups: list[Group]
    stats: dict[str, float]
    random_state: dict[str, Any] = field(repr=False)


@dataclass
class WorkerJob:
    """What the worker process is started with: the run's config, its env's registration (which a user may have
    made in the parent only), the policy's weights at `version` (on the CPU) and what to resume from."""

    cfg: TrainConfig
    env_spec: gymnasium.envs.registration.EnvSpec
    policy: torch.nn.Module
    tokenizer: PreTrainedTokenizerBase
    stop_ids: set[int]
    engine_options: dict[str, Any]
    device: str
    threads: int
    version: int = 0
    first_batch: int = 1
    evaluate_first: bool = False
    data_state: dict[str, Any] | None = None  # the learner's data stream, which a fresh worker continues
    random_state: dict[str, Any] | None = None  # a checkpoint's: the worker's streams after its last batch
    sampler_state: dict[str, Any] = field(default_factory=dict)  # the learner's problem sampler, otherwise
    ray_address: str | None = field(default_factory=lambda: ray_address())  # Ray engines join the learner's cluster
    parent_pid: int = field(default_factory=os.getpid)


class AsyncRollouts:
    """The learner's side: starts the worker, hands it each step's weights (`push`), and returns its batches in
    order (`batch`), its evaluations (`evaluation`) and what is in flight for a checkpoint (`in_flight`)."""

    @classmethod
    def start(cls, cfg: TrainConfig, policy: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, stop_ids: set[int],
              engine_options: dict[str, Any], version: int, data_rng: np.random.Generator,
              saved: dict[str, Any] | None, evaluate_first: bool, sampler_state: dict[str, Any]) -> AsyncRollouts:
        """A worker starting from `policy` (the weights of step `version`) and continuing `saved`, a checkpoint's
        in-flight batches, or else the learner's data stream and problem sampler (`sampler_state`). Unless
        `cfg.threads` sets both, the learner keeps half the CPU's cores (this process's torch threads are set so) and
        the worker takes the other half."""
        saved = saved or {"k": cfg.async_rollouts, "in_flight": []}
        if saved["k"] != cfg.async_rollouts:
            raise ValueError(f"the checkpoint was written with async_rollouts={saved['k']}: resume with that "
                             f"(this run has async_rollouts={cfg.async_rollouts})")
        in_flight: list[Batch] = saved["in_flight"]
        cpus = len(os.sched_getaffinity(0))
        if not cfg.threads:
            torch.set_num_threads(max(1, cpus - cpus // 2))
        device = str(next(policy.parameters()).device)
        job = WorkerJob(cfg, gymnasium.spec(cfg.env), copy.deepcopy(policy).cpu(), tokenizer, stop_ids,
                        engine_options, device, cfg.threads or max(1, cpus // 2), version=version,
                        first_batch=version + len(in_flight) + 1, evaluate_first=evaluate_first,
                        data_state=data_rng.bit_generator.state,
                        random_state=in_flight[-1].random_state if in_flight else None, sampler_state=sampler_state)
        return cls(job, in_flight)

    def __init__(self, job: WorkerJob, in_flight: list[Batch] = ()) -> None:
        self.k, self.last = job.cfg.async_rollouts, job.cfg.steps + job.cfg.async_rollouts
        ctx = mp.get_context("spawn")
        self.requests, self.results = ctx.Queue(), ctx.Queue()
        self.ready: dict[int, Batch] = {b.t: b for b in in_flight}
        self.evals: dict[int, dict[str, float]] = {}
        # the weights the learner hands over, in k + 2 slots of shared memory mapped once into both processes: a push
        # copies into a slot and sends only its version, so no tensor is pickled per step
        self.slots = [weight_slot(job.policy) for _ in range(self.k + 2)]
        self.process = ctx.Process(target=work, args=(job, self.slots, self.requests, self.results),
                                   name="rlvr-rollouts")
        self.process.start()

    def push(self, policy: torch.nn.Module, version: int, evaluate: bool) -> None:
        """The learner's weights after step `version`; with `evaluate`, the worker also evaluates them. Version v
        goes to slot v % (k + 2), which held v - k - 2: the worker loaded that before generating batch v - 1,
        which the learner received before it could finish step v."""
        slot = self.slots[version % len(self.slots)]
        with torch.no_grad():
            for name, value in policy.state_dict().items():
                slot[name].copy_(value)
        self.requests.put(("weights", version, evaluate))

    def batch(self, t: int) -> tuple[list[Group], dict[str, float]]:
        """Batch t, waiting for the worker if it is not collected yet."""
        while t not in self.ready:
            self._receive()
        b = self.ready.pop(t)
        return b.groups, b.stats

    def evaluation(self, version: int) -> dict[str, float]:
        """The held-out metrics of step `version`'s weights (asked for by `push` or `evaluate_first`)."""
        while version not in self.evals:
            self._receive()
        return self.evals.pop(version)

    def in_flight(self, step: int) -> list[Batch]:
        """Batches step+1 ... step+k, waited for: what a checkpoint after `step` saves."""
        wanted = range(step + 1, min(step + self.k, self.last) + 1)
        for t in wanted:
            while t not in self.ready:
                self._receive()
        return [self.ready[t] for t in wanted]

    def _receive(self) -> None:
        while True:
            try:
                message = self.results.get(timeout=POLL_S)
                break
            except queue.Empty:
                if not self.process.is_alive():
                    raise RuntimeError(f"the rollout worker exited (code {self.process.exitcode}) without a result")
        kind, *body = message
        if kind == "error":
            raise RuntimeError(f"the rollout worker failed:\n{body[0]}")
        if kind == "eval":
            self.evals[body[0]] = body[1]
        else:
            self.ready[body[0].t] = body[0]

    def close(self) -> None:
        """Stop the worker (its engine and executor close with it), reading what it still sends so it can exit."""
        if self.process.is_alive():
            self.requests.put(("stop",))
        deadline = time.monotonic() + 60
        while self.process.is_alive() and time.monotonic() < deadline:
            try:
                self.results.get(timeout=0.1)
            except (queue.Empty, EOFError, OSError):  # nothing, or a message whose tensors left with the worker
                pass
        if self.process.is_alive():
            self.process.terminate()
        self.process.join()


def weight_slot(policy: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A copy of `policy`'s state dict in shared memory (CPU), which a spawned worker maps instead of copying."""
    return {name: value.detach().cpu().clone().share_memory_() for name, value in policy.state_dict().items()}


def work(job: WorkerJob, slots: list[dict[str, torch.Tensor]], requests: mp.Queue, results: mp.Queue) -> None:
    """The worker process: collect batches on the fixed schedule until told to stop; a failure is reported."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the learner's to handle: it stops the worker
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # exit through the finally blocks (pools, actors)
    try:
        produce(job, slots, requests, results)
    except Exception:
        results.put(("error", traceback.format_exc()))


def produce(job: WorkerJob, slots: list[dict[str, torch.Tensor]], requests: mp.Queue, results: mp.Queue) -> None:
    cfg, k = job.cfg, job.cfg.async_rollouts
    torch.set_num_threads(job.threads)
    if job.ray_address:
        os.environ["RAY_ADDRESS"] = job.ray_address
    gymnasium.registry.setdefault(job.env_spec.id, job.env_spec)
    policy = job.policy.to(job.device)
    autocast = Precision(cfg.mixed_precision, torch.device(job.device), next(policy.parameters()).dtype).autocast
    engine = make_engine(cfg.engine, policy, job.tokenizer, autocast=autocast, **job.engine_options)
    # the random streams after the engine is built (vLLM seeds torch's generators with its own seed)
    data_rng = np.random.default_rng(cfg.seed)
    if job.random_state is None:
        if job.data_state is not None:
            data_rng.bit_generator.state = job.data_state
        random.seed(cfg.seed)
        np.random.seed(cfg.seed)
        torch.manual_seed(cfg.seed)
    else:
        restore_random_states(job.random_state, data_rng)
    executor = make_executor(cfg.executor)
    try:
        collector = Collector(cfg, engine, job.tokenizer, executor, algorithms.make(cfg.algo, **cfg.algo_kwargs),
                              job.stop_ids, data_rng)
        collector.sampler.load_state_dict(job.random_state["sampler"] if job.random_state else job.sampler_state)
        version, evaluate, waited = job.version, job.evaluate_first, 0.0
        while True:
            collector.policy_version = version
            if evaluate:
                results.put(("eval", version, collector.evaluate(collector.eval_set, eval_seed(cfg.seed, version))))
            for t in batches_of(version, k):
                if job.first_batch <= t <= cfg.steps + k:
                    groups, stats = collector.collect()
                    stats["time/engine_wait"], waited = waited, 0.0
                    streams = {**random_states(data_rng), "sampler": collector.sampler.state_dict()}
                    results.put(("batch", Batch(t, groups, stats, streams)))
            start = time.perf_counter()
            message = next_request(requests, job.parent_pid)
            waited += time.perf_counter() - start
            if message[0] == "stop":
                return
            _, version, evaluate = message
            policy.load_state_dict(slots[version % len(slots)])
            engine.sync_weights(policy)  # an hf engine generates with `policy` itself; others load it
    finally:
        for part in (executor, engine):
            if hasattr(part, "close"):
                part.close()


def next_request(requests: mp.Queue, parent_pid: int) -> tuple:
    """The learner's next message; ("stop",) if the learner's process is gone."""
    while True:
        try:
            return requests.get(timeout=POLL_S)
        except queue.Empty:
            if os.getppid() != parent_pid:
                return ("stop",)
