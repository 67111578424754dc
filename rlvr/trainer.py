"""The RLVR training loop, one plain function of a config dataclass:

    sample B prompts -> G completions each -> verify -> algorithm.select (dynamic sampling refills the batch)
    -> advantages -> old (and reference) logprobs -> mu epochs of minibatch updates -> weight sync

(the rollout half, single- and multi-turn, is `rlvr.rollout.collector`; with `async_rollouts=k` it runs up to k
batches ahead in a worker process, `rlvr.rollout.async_worker`),

with held-out evaluation, JSONL metrics, checkpoints that resume exactly, and a clean stop on SIGINT/SIGTERM."""

from __future__ import annotations

import contextlib
import json
import random
import signal
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.distributed.tensor import DTensor
from tqdm import tqdm

from rlvr import algorithms, checkpoint
from rlvr.algorithms.core import fit_generation_budget
from rlvr.algorithms.correction import BehaviourCorrection, behaviour_weights, mismatch_k3
from rlvr.batch import PolicyBatch, build_batch, micro_batches, token_logprobs
from rlvr.chat import ensure_chat_template
from rlvr.config import TrainConfig
from rlvr.determinism import deterministic_algorithms
from rlvr.envs.multiturn import MultiTurnEnv
from rlvr.envs.prompt_env import PromptEnv
from rlvr.lm_head import check_output_head
from rlvr.lora import apply_lora, base_model_trainable, is_peft_model
from rlvr.metrics import MetricsSink
from rlvr.models import disable_dropout, enable_activation_checkpointing, load_policy, resolve_dtype
from rlvr.parallel import SingleProcess
from rlvr.precision import Precision
from rlvr.rollout import Engine
from rlvr.rollout.async_worker import AsyncRollouts, eval_seed, staleness
from rlvr.rollout.collector import Collector, make_env, uses_chat
from rlvr.rollout.hf import stop_token_ids
from rlvr.types import Completion, Group
from rlvr.verifiers import make_executor
from rlvr.warmstart import TINY_WARMSTART_STEPS, AnswerTargets, EpisodeTargets, supervised_warmstart


class Trainer:
    """Owns the policy, engine, optimizer and data stream of one run. `parallel` is what differs under torchrun
    (`rlvr.parallel`: one process by default; `rlvr.distributed` for DDP and FSDP)."""

    def __init__(self, cfg: TrainConfig, parallel: SingleProcess | None = None) -> None:
        self.cfg = cfg
        self.parallel = parallel or SingleProcess()
        self.is_main = self.parallel.is_main  # the process that rolls out, evaluates, logs and saves
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.restore_determinism = deterministic_algorithms(cfg.deterministic)  # torch's setting is the process's
        random.seed(cfg.seed)
        torch.manual_seed(cfg.seed)
        self.out = Path(cfg.out_dir)
        self.algo = algorithms.make(cfg.algo, **cfg.algo_kwargs)
        fit_generation_budget(self.algo, cfg.max_new_tokens)  # Dr. GRPO's MAX_TOKENS is the generation budget
        if cfg.async_rollouts and self.parallel.world_size > 1:
            raise ValueError("async_rollouts > 0 runs one rollout worker beside a single learner process; under "
                             "torchrun use async_rollouts=0")
        # stale samples are always corrected: async rollouts without a mode use TRL's default, token_truncate
        mode = cfg.is_correction or ("token_truncate" if cfg.async_rollouts else None)
        self.correction = BehaviourCorrection(mode, cfg.is_cap, cfg.is_mask_low, cfg.is_mask_high)
        # a single-turn PromptEnv, or a multi-turn env over one (`task`: its problems, prompts and verifier)
        self.env: PromptEnv | MultiTurnEnv = make_env(cfg, cfg.train_split)
        self.eval_env: PromptEnv | MultiTurnEnv = make_env(cfg, cfg.eval_split)
        self.multi_turn = isinstance(self.env, MultiTurnEnv)
        self.task: PromptEnv = self.env.task if self.multi_turn else self.env
        if not isinstance(self.task, PromptEnv):
            raise TypeError(f"{cfg.env} is a {type(self.env).__name__}; the trainer rolls out a PromptEnv or a "
                            "MultiTurnEnv over one")
        self.executor = make_executor(cfg.executor)
        device = ("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device
        self.dtype = resolve_dtype(cfg.dtype, device)
        self.model, self.tokenizer = load_policy(cfg.model, dtype=self.dtype, device=device)
        if self.multi_turn:
            if not cfg.chat_template:
                raise ValueError(f"{cfg.env} is multi-turn: its conversations are rendered with a chat template "
                                 "(chat_template=False cannot be honoured)")
            ensure_chat_template(self.tokenizer)  # a plain one for a tokenizer without (rlvr.chat)
        disable_dropout(self.model).train()  # training mode (for gradient checkpointing), the engine's distribution
        if cfg.gradient_checkpointing:
            enable_activation_checkpointing(self.model)
        if cfg.lora and not is_peft_model(self.model):
            self.model = apply_lora(self.model, cfg.lora)
        self.lora = is_peft_model(self.model)
        check_output_head(self.model)
        self.precision = Precision(cfg.mixed_precision, torch.device(device), self.dtype)
        # the whole policy, which the engine generates with, the warm-start trains and checkpoints store: the
        # same module as self.model, except under FSDP, where self.model is sharded and rank 0 keeps this copy
        self.rollout_model: torch.nn.Module = self.parallel.whole_copy(self.model)
        self.add_special_tokens = not uses_chat(cfg, self.tokenizer)  # a chat template writes them itself
        # the run's seeded data stream (which checkpoints save): every training problem is drawn from it
        self.data_rng = np.random.default_rng(cfg.seed)
        self.stop_ids = stop_token_ids(self.rollout_model, self.tokenizer)
        # asynchronous rollouts: the engine lives in the worker process (started by `train`), none here
        engine = None if cfg.async_rollouts else self._make_engine()
        self.collector = Collector(cfg, engine, self.tokenizer, self.executor, self.algo, self.stop_ids,
                                   self.data_rng, envs=(self.env, self.eval_env))
        self.sampling = self.collector.sampling
        self.rollouts: AsyncRollouts | None = None
        self.resumed_rollouts: dict[str, Any] | None = None  # a checkpoint's in-flight batches, for the worker
        self.step = 0
        self.ref_model: torch.nn.Module | None = None
        # what the loss's forward runs through: the policy, DDP's wrapper of it, or (in place) FSDP's shards of it
        self.learner: torch.nn.Module = self.parallel.wrap(self.model, self.rollout_model,
                                                            keep_reference=self.algo.beta > 0)
        self.make_optimizer()
        varying = not self.parallel.collective_forwards  # how the learner's forwards lay out a batch (rlvr.batch)
        self.layout = dict(share_prompts=cfg.share_prompt_forward, buckets=cfg.length_buckets if varying else 1,
                           dedupe=cfg.dedupe_forward and varying)
        self.eval_set = self.collector.eval_set
        self._stop_requested = False
        self.started = time.perf_counter()
        self.metrics = MetricsSink(self.out, cfg.report_to, config=asdict(cfg))

    @property
    def engine(self) -> Engine | None:
        """The rollout engine, which the collector generates with (None with async rollouts: the worker's)."""
        return self.collector.engine

    @engine.setter
    def engine(self, engine: Engine) -> None:
        self.collector.engine = engine

    def close(self) -> None:
        """Stop what this trainer started: its rollout worker, its verifier executor's workers, its engine's workers
        or Ray actors, and the metrics writer, and give torch its determinism setting back. `with Trainer(cfg) as
        trainer:` closes it at the end of the block."""
        self.stop_rollouts()
        for part in (self.executor, self.engine):
            if hasattr(part, "close"):
                part.close()
        self.metrics.close()
        self.restore_determinism()

    def __enter__(self) -> Trainer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def make_optimizer(self) -> None:
        """AdamW over the learner's trainable parameters (a LoRA policy's adapters), with a linear warm-up of the
        learning rate."""
        cfg = self.cfg
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(trainable, lr=cfg.lr, betas=(0.9, 0.99), weight_decay=cfg.weight_decay)
        warmup = max(1, cfg.warmup_steps)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: min(1.0, (s + 1) / warmup))

    def engine_options(self) -> dict[str, Any]:
        """`rlvr.rollout.make_engine`'s options for this run (the worker of async rollouts builds its engine so)."""
        cfg = self.cfg
        return dict(model=cfg.model, save_dir=self.out / "initial_model", add_special_tokens=self.add_special_tokens,
                    seed=cfg.seed, batch_tokens=cfg.engine_batch_tokens, workers=cfg.engine_workers,
                    gpus=cfg.engine_gpus, vllm_kwargs=dict(cfg.vllm_kwargs))

    def _make_engine(self) -> Engine:
        """The run's engine (`rlvr.rollout.make_engine`) over the rollout policy."""
        return self.parallel.make_engine(self.cfg.engine, self.rollout_model, self.model, self.tokenizer,
                                         autocast=self.precision.autocast, **self.engine_options())

    # -- asynchronous rollouts -----------------------------------------------------------------------------
    def start_rollouts(self, evaluate_first: bool) -> None:
        """With `async_rollouts=k`, start the worker from the current weights (step `self.step`), continuing a
        checkpoint's in-flight batches; `evaluate_first`: it evaluates these weights before collecting."""
        if self.cfg.async_rollouts and self.is_main:
            self.rollouts = AsyncRollouts.start(self.cfg, self.rollout_model, self.tokenizer, self.stop_ids,
                                                self.engine_options(), self.step, self.data_rng,
                                                self.resumed_rollouts, evaluate_first,
                                                self.collector.sampler.state_dict())

    def stop_rollouts(self) -> None:
        if self.rollouts is not None:
            self.rollouts.close()
            self.rollouts = None

    def next_batch(self) -> tuple[list[Group], dict[str, float]]:
        """Batch `step + 1`: collected now, or by the worker of async rollouts."""
        if self.rollouts is None:
            self.collector.policy_version = self.step
            return self.collector.collect()
        return self.rollouts.batch(self.step + 1)

    def eval_due(self, step: int) -> bool:
        return bool(self.cfg.eval_every) and (step % self.cfg.eval_every == 0 or step == self.cfg.steps)

    # -- the update ----------------------------------------------------------------------------------------
    def update(self, groups: list[Group]) -> dict[str, float]:
        """Learn on `groups` (this rank's shard of them); the metrics are means over ranks."""
        cfg, algo = self.cfg, self.algo
        groups = self.parallel.shard(groups)
        completions = [c for g in groups for c in g.completions]
        prompts = [self.collector.first_prompt(g.problem) for g in groups for _ in g.completions]
        batch = build_batch(self.tokenizer, prompts, completions, add_special_tokens=self.add_special_tokens)
        keep = torch.tensor([0.0 if v.mask else 1.0 for g in groups for v in g.verdicts])
        batch.completion_mask *= keep[:, None]  # verifier-masked completions (e.g. truncated) leave the loss
        rewards = torch.tensor([g.rewards for g in groups], dtype=torch.float32)
        advantages = algo.advantages(rewards).reshape(-1)
        mask = batch.completion_mask
        mu = self.behaviour_logprobs(batch, completions)  # log mu: what the engine sampled each token with
        n = len(batch)
        mb = cfg.minibatch_size or n
        # With one optimizer step per batch, pi_theta_old is the policy being differentiated: its logprobs are
        # the loss forward's own, detached (rho = 1 exactly), and a separate no-grad forward would be wasted.
        single_step = cfg.epochs == 1 and mb >= n
        with torch.no_grad():
            if single_step:  # filled by the loss forward
                old_logp = torch.zeros(mask.shape, dtype=torch.promote_types(self.dtype, torch.float32))
                entropy = torch.zeros_like(old_logp)
            else:
                old_logp, entropy = self.batch_logprobs(self.model, batch, with_entropy=True)
            ref_logp = self.reference_logprobs(batch) if algo.beta > 0 else None
        collected: dict[str, list[float]] = {}
        for _ in range(cfg.epochs):
            order = torch.randperm(n) if mb < n else torch.arange(n)  # fresh minibatches every epoch
            for start in range(0, n, mb):
                idx = order[start:start + mb]
                # normalisers over the whole minibatch, so micro-batches add up to its loss; empty rows don't count
                num_tokens, num_seqs = self.loss_divisors(mask[idx])
                self.optimizer.zero_grad(set_to_none=True)
                for j in micro_batches(batch, idx, cfg.micro_batch_size, cfg.micro_batch_tokens):
                    sub = batch.select(j)
                    width = sub.completion_mask.shape[1]  # the micro-batch's own completion width
                    logp, ent = self.logprobs(self.learner, sub, with_entropy=single_step)
                    if single_step:
                        old_logp[j, :width], entropy[j, :width] = logp.detach().cpu(), ent.cpu()
                    w = (self.correction.weights(old_logp[j, :width], mu[j, :width], sub.completion_mask)
                         if self.correction.active else None)
                    loss, lm = algo.loss(logp, old_logp[j, :width].to(logp.device),
                                         None if ref_logp is None else ref_logp[j, :width].to(logp.device),
                                         advantages[j].to(logp.device), sub.completion_mask.to(logp.device),
                                         num_tokens=num_tokens, num_seqs=num_seqs,
                                         is_weights=None if w is None else w.to(logp.device))
                    if not torch.isfinite(loss):
                        raise FloatingPointError(f"step {self.step}: loss is {float(loss)}; metrics {lm}")
                    self.precision.backward(loss)
                    for k, v in lm.items():
                        collected.setdefault(k, []).append(v)
                self.precision.unscale(self.optimizer)
                grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm)
                if isinstance(grad_norm, DTensor):  # FSDP: the norm of the sharded gradients, reduced over ranks
                    grad_norm = grad_norm.full_tensor()
                collected.setdefault("grad_norm", []).append(float(grad_norm))
                self.precision.step(self.optimizer)
                self.scheduler.step()
        self.sync_engine()
        metrics = {"entropy": float((entropy.sum() / mask.sum().clamp(min=1))), **algorithms.group_metrics(rewards)}
        if cfg.async_rollouts:
            metrics.update(staleness(completions, self.step, cfg.async_rollouts))
        if mu is not None:  # how far the engine's distribution is from the learner's, and what the correction did
            metrics["logprob_mismatch"] = float(((mu - old_logp).abs() * mask).sum() / mask.sum().clamp(min=1))
            if self.correction.active:
                metrics.update(behaviour_weights(self.correction, old_logp, mu, mask)[1])
            else:
                metrics["mismatch/k3"] = mismatch_k3(old_logp, mu, mask)
        metrics.update({k: float(np.mean(v)) for k, v in collected.items()})
        metrics["lr"] = self.scheduler.get_last_lr()[0]
        keys = sorted(metrics)
        means = dict(zip(keys, self.parallel.mean([metrics[k] for k in keys])))
        return {k: means[k] for k in metrics}

    def behaviour_logprobs(self, batch: PolicyBatch, completions: list[Completion]) -> torch.Tensor | None:
        """log mu [N, T], the engine's log-probs of the batch's tokens; None if a completion came without them,
        which the behaviour correction cannot honour."""
        missing = [i for i, c in enumerate(completions)
                   if c.logprobs is None or c.token_ids is None or len(c.logprobs) != len(c.token_ids)]
        if missing and self.correction.active:
            raise ValueError(f"is_correction/is_mask_* weigh each token by the engine's log-prob, but {len(missing)} "
                             f"completions (the first: row {missing[0]}) came without one per token")
        return None if missing else batch.engine_logprobs(completions)

    def logprobs(self, model: torch.nn.Module, batch: PolicyBatch,
                 with_entropy: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One forward pass's log-probs (and entropies) under the sampling distribution, in the run's precision."""
        with self.precision.autocast():
            return token_logprobs(model, batch, with_entropy=with_entropy, sampling=self.sampling,
                                  chunk_tokens=self.cfg.logit_chunk_tokens, **self.layout)

    @torch.no_grad()
    def batch_logprobs(self, model: torch.nn.Module, batch: PolicyBatch,
                       with_entropy: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """`logprobs` of a whole batch [N, T] (on the CPU), in the micro-batches of the loss's forward passes."""
        logp = torch.zeros(batch.completion_mask.shape, dtype=torch.promote_types(self.dtype, torch.float32))
        entropy = torch.zeros_like(logp) if with_entropy else torch.zeros(0)
        rows = torch.arange(len(batch))
        for j in micro_batches(batch, rows, self.cfg.micro_batch_size, self.cfg.micro_batch_tokens):
            sub = batch.select(j)
            width = sub.completion_mask.shape[1]
            lp, ent = self.logprobs(model, sub, with_entropy)
            logp[j, :width] = lp.cpu()
            if with_entropy:
                entropy[j, :width] = ent.cpu()
        return logp, entropy

    def reference_logprobs(self, batch: PolicyBatch) -> torch.Tensor:
        """log pi_ref per token [N, T]: a LoRA policy's base model with its adapters disabled, else `reference()`."""
        if not self.lora:
            return self.batch_logprobs(self.reference(), batch)[0]
        with self.model.disable_adapter():
            return self.batch_logprobs(self.model, batch)[0]

    def loss_divisors(self, mask: torch.Tensor) -> tuple[float, float]:
        """The minibatch's token and sequence counts, the divisors of the loss (rows with no token don't count);
        under torchrun the global counts over the world size, so that DDP's average is the global loss's gradient."""
        tokens, seqs = self.parallel.mean([float(mask.sum()), float((mask.sum(-1) > 0).sum())])
        return tokens, seqs

    def reference(self) -> torch.nn.Module:
        """pi_ref of full fine-tuning: a frozen copy of the policy as it was at the first update (after any
        warm-start)."""
        if self.ref_model is None:
            self.ref_model = self.parallel.frozen_copy(self.model)
        return self.ref_model

    # -- evaluation ----------------------------------------------------------------------------------------
    def evaluate(self) -> dict[str, float]:
        """Greedy pass@1 and sampled pass@k of the current weights on the held-out problems (on the main process;
        {} on the others). With async rollouts the worker evaluates, at the steps `eval_due` names."""
        if not self.is_main:
            return {}
        if self.rollouts is not None:
            return self.rollouts.evaluation(self.step)
        if self.engine is None:
            raise RuntimeError("with async_rollouts > 0 the rollout worker evaluates, during train(); evaluate "
                               "with async_rollouts=0 (as `rlvr eval` does)")
        return self.collector.evaluate(self.eval_set, eval_seed(self.cfg.seed, self.step))

    # -- checkpoints ---------------------------------------------------------------------------------------
    @property
    def checkpoint_dir(self) -> Path:
        return self.out / "checkpoint"

    def sync_engine(self) -> None:
        """Hand the learner's current weights to the rollout engine (under FSDP, gathered into its whole copy);
        async rollouts get them at the end of the step (`train_step`)."""
        self.parallel.refresh_whole_copy(self.model, self.rollout_model)
        if self.engine is not None:
            self.engine.sync_weights(self.rollout_model)

    def whole_state(self, module: torch.nn.Module) -> dict[str, torch.Tensor]:
        """A module's whole state dict (a sharded learner gathers it: every rank must call this)."""
        return self.parallel.whole_state(module)

    def save(self) -> None:
        """Write the checkpoint (`rlvr.checkpoint`): every rank gathers, the main process writes."""
        optimizer = self.parallel.optimizer_state(self.model, self.optimizer)
        ref = None if self.ref_model is None else self.whole_state(self.ref_model)
        if not self.is_main:
            return
        state = {"step": self.step, "optimizer": optimizer, "scheduler": self.scheduler.state_dict(),
                 "grad_scaler": self.precision.state_dict(), "config": asdict(self.cfg),
                 "sampler": self.collector.sampler.state_dict(), **checkpoint.random_states(self.data_rng)}
        if self.rollouts is not None:  # what the worker has collected ahead, and its random streams after it
            state["rollouts"] = {"k": self.cfg.async_rollouts, "in_flight": self.rollouts.in_flight(self.step)}
        # a LoRA policy's checkpoint is its adapter; the built-in model's base (which the warm-start trains) is
        # kept beside it, any other base is read again from --model
        checkpoint.write(self.checkpoint_dir, self.rollout_model, self.tokenizer, state, ref,
                         keep_base=self.lora and self.cfg.model == "tiny")

    def read_checkpoint(self) -> dict[str, Any]:
        """The checkpoint's state.pt, plus the policy's and the reference's weights as whole state dicts."""
        return checkpoint.read(self.checkpoint_dir, self.dtype, type(self.rollout_model))

    def restore(self, state: dict[str, Any]) -> None:
        """Load a checkpoint's weights, reference, optimizer, scheduler and step (on every rank)."""
        self.parallel.load_whole_state(self.model, state["model"])
        if state["ref"] is not None:
            self.ref_model = None  # a fresh copy of the restored policy, then the reference's own weights
            self.parallel.load_whole_state(self.reference(), state["ref"])
        self.parallel.load_optimizer_state(self.model, self.optimizer, state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.precision.load_state_dict(state.get("grad_scaler", {}))
        self.step = state["step"]
        self.sync_engine()

    def restore_sampling(self, state: dict[str, Any]) -> None:
        """Continue the checkpoint's random streams and drop metric records past its step (main process)."""
        checkpoint.restore_random_states(state, self.data_rng)
        self.collector.sampler.load_state_dict(state.get("sampler", {}))
        self.resumed_rollouts = state.get("rollouts")
        self.metrics.truncate(self.step)

    def load(self) -> None:
        """Resume: the main process reads the checkpoint, every rank restores its learner from it."""
        self.parallel.barrier()
        state = self.parallel.from_main(self.read_checkpoint)
        self.restore(state)
        if self.is_main:
            self.restore_sampling(state)

    # -- the loop ------------------------------------------------------------------------------------------
    def _request_stop(self, signum: int, _frame: Any) -> None:
        self._stop_requested = True

    def log(self, record: dict[str, Any]) -> None:
        if self.is_main:
            self.metrics.write(record)

    def train(self, resume: bool = False) -> list[dict[str, Any]]:
        """Run to `cfg.steps`; returns the per-step metric records (also in `out_dir/metrics.jsonl`)."""
        try:
            records = self._run(resume)
            self.parallel.barrier()  # every rank's collectives are finished before the teardown
            return records
        finally:
            self.learner = self.model  # a DDP wrapper's reducer holds the process group: let it go first
            self.parallel.close()

    def _run(self, resume: bool) -> list[dict[str, Any]]:
        cfg = self.cfg
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "config.json").write_text(json.dumps(asdict(cfg), indent=2))
        records: list[dict[str, Any]] = []
        if resume:
            self.load()
        else:
            self.metrics.reset()
            self._warmstart()
        self.start_rollouts(evaluate_first=not resume)
        if not resume:
            self.log({"step": 0, **self.evaluate()})
        handlers = {s: signal.signal(s, self._request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
        bar = tqdm(total=cfg.steps, initial=self.step, disable=not (cfg.progress and self.is_main),
                   desc="rlvr train")
        self.started = time.perf_counter()  # the RL phase's clock (time/elapsed)
        try:
            while self.step < cfg.steps and not self.parallel.should_stop(self._stop_requested):
                record = self.train_step()
                if self.eval_due(self.step):
                    record.update(self.evaluate())
                self.log(record)
                records.append(record)
                bar.update(1)
                bar.set_postfix({k: f"{record[k]:.3g}" for k in ("reward", "accuracy", "length", "clip_frac_high",
                                                               "kl_ref", "tokens_per_s") if k in record})
                if cfg.save_every and self.step % cfg.save_every == 0:
                    self.save()
            self.save()
        finally:  # an exception propagates without saving: the last checkpoint stays the last good state
            bar.close()
            self.metrics.close()
            self.stop_rollouts()
            for s, h in handlers.items():
                signal.signal(s, h)
        return records

    def train_step(self) -> dict[str, Any]:
        """One RL step: collect B groups, update on them, advance the step counter; returns the step's record."""
        t0 = time.perf_counter()
        groups, stats = self.parallel.from_main(self.next_batch)
        t_wait = time.perf_counter() - t0
        record: dict[str, Any] = {"step": self.step + 1, **stats}
        if groups:
            record.update(self.update(groups))
        self.step += 1
        if self.rollouts is not None:  # the worker loads these weights when its schedule reaches them
            self.rollouts.push(self.rollout_model, self.step, evaluate=self.eval_due(self.step))
        t_step = time.perf_counter() - t0
        record.update({"tokens_per_s": stats["gen/tokens"] / max(stats["time/gen"], 1e-9),
                       "time/step": t_step, "time/wait": t_wait, "time/update": t_step - t_wait,
                       "time/elapsed": time.perf_counter() - self.started})
        return record

    def _warmstart(self) -> None:
        """The supervised warm-start, on the main process; then every rank's learner starts from its result."""
        self.parallel.barrier()  # every rank has reset the run directory before the main process writes to it
        cfg = self.cfg
        steps = cfg.warmstart_steps
        if steps is None:
            steps = TINY_WARMSTART_STEPS if cfg.model == "tiny" else 0
        if steps and self.is_main:
            targets = (EpisodeTargets(self.env, self.collector.renderer, cfg.warmstart_tool_prob) if self.multi_turn
                       else AnswerTargets(self.env, self.tokenizer, cfg.warmstart_continue_prob))
            # a LoRA policy's warm-start trains its base model (from scratch, for "tiny"); RL then the adapters
            with base_model_trainable(self.rollout_model) if self.lora else contextlib.nullcontext():
                losses = supervised_warmstart(self.rollout_model, self.tokenizer, targets, steps, lr=cfg.warmstart_lr,
                                              weight_decay=cfg.warmstart_weight_decay, seed=cfg.seed + 1,
                                              micro_batch_tokens=cfg.micro_batch_tokens,
                                              progress=cfg.progress and self.is_main)
            self.log({"step": 0, "warmstart/steps": steps, "warmstart/final_loss": losses[-1]})
            if self.engine is not None:  # not sync_engine(): only rank 0 warm-starts, no gather
                self.engine.sync_weights(self.rollout_model)
        self.parallel.broadcast_parameters(self.model, self.rollout_model)


def train(cfg: TrainConfig, resume: bool = False) -> list[dict[str, Any]]:
    with Trainer(cfg) as trainer:
        return trainer.train(resume=resume)
