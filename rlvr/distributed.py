"""The learner under torch.distributed (launched by `torchrun`): gloo on CPU, NCCL on GPU, the policy wrapped in
DDP (`strategy="ddp"`) or sharded by FSDP2 (`strategy="fsdp"`: each rank holds 1/world of the parameters,
gradients and optimizer state; each decoder block is one all-gather unit). Rank 0 rolls out (with any engine,
e.g. `ray-hf`), verifies, evaluates, logs and saves; every rank learns on its shard of the groups, split by prompt
so that a group never straddles two ranks. Under FSDP rank 0 also keeps a whole copy of the policy for its rollout
engine, refreshed from the shards after every update.

Each rank divides its loss by the *global* token (or sequence) count over the world size, so that the gradient
average of DDP (or FSDP's reduce-scatter) is exactly the single-process gradient of the whole batch, whatever the
lengths per rank."""

from __future__ import annotations

import copy
import math
import os
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                     get_optimizer_state_dict, set_model_state_dict,
                                                     set_optimizer_state_dict)
from torch.distributed.fsdp import fully_shard
from torch.nn.parallel import DistributedDataParallel

from rlvr.rollout import Engine, make_engine
from rlvr.trainer import TrainConfig, Trainer
from rlvr.types import Group


def launched() -> bool:
    """True in a process that torchrun started as one of several ranks."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_process_group(device: str = "auto") -> tuple[int, int]:
    """Join the process group described by torchrun's environment variables (RANK, WORLD_SIZE, LOCAL_RANK,
    MASTER_ADDR, MASTER_PORT): NCCL with one GPU per local rank when the learner runs on CUDA, else gloo.
    Returns (rank, world size)."""
    missing = [v for v in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if v not in os.environ]
    if missing:
        raise RuntimeError(f"torch.distributed needs {', '.join(missing)} in the environment: launch with torchrun")
    cuda = torch.cuda.is_available() if device == "auto" else device.startswith("cuda")
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))  # "cuda" now means this rank's GPU
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    return dist.get_rank(), dist.get_world_size()


def fsdp_shard(model: torch.nn.Module) -> torch.nn.Module:
    """Shard `model` in place with FSDP2: every decoder block (the classes a transformers model lists in
    `_no_split_modules`) is one unit, the rest (embeddings, final norm, head) the root's."""
    blocks = set(getattr(model, "_no_split_modules", None) or ())
    for module in list(model.modules())[1:]:
        if type(module).__name__ in blocks:
            fully_shard(module)
    return fully_shard(model)


WHOLE = StateDictOptions(full_state_dict=True, cpu_offload=True)  # gathered onto CPU (on rank 0 only for models)


def shard_groups(groups: list[Group], rank: int, world_size: int) -> list[Group]:
    """Rank `rank`'s contiguous block of ceil(len/world) groups. A short block is padded with fully masked copies
    of a group, which add nothing to the loss, so every rank runs the same number of forward/backward passes."""
    if not groups:
        raise ValueError("no groups to shard")
    per_rank = math.ceil(len(groups) / world_size)
    mine = groups[rank * per_rank:(rank + 1) * per_rank]
    filler = Group(groups[-1].problem, groups[-1].completions, [replace(v, mask=True) for v in groups[-1].verdicts])
    return mine + [filler] * (per_rank - len(mine))


class DistributedTrainer(Trainer):
    """A Trainer that is one rank of a torchrun job. `minibatch_size` and `micro_batch_size` count completions
    per rank; `--resume` on several nodes reads the checkpoint on rank 0 only and broadcasts it."""

    def __init__(self, cfg: TrainConfig) -> None:
        if cfg.strategy not in ("ddp", "fsdp"):
            raise ValueError(f"strategy must be 'ddp' or 'fsdp', got {cfg.strategy!r}")
        self.rank, self.world_size = init_process_group(cfg.device)
        self.is_main = self.rank == 0
        self.fsdp = cfg.strategy == "fsdp"
        super().__init__(cfg)
        self._comm_device = self.model.device if dist.get_backend() == "nccl" else torch.device("cpu")
        if not self.fsdp:
            on_gpu = self.model.device.type == "cuda"
            self.learner = DistributedDataParallel(self.model, device_ids=[self.model.device.index] if on_gpu else None)
            return
        # pi_ref is a sharded copy too, taken now (FSDP modules cannot be deep-copied) and loaded when first used
        self._ref_shell = None if self.algo.beta == 0 else fsdp_shard(copy.deepcopy(self.model)).requires_grad_(False)
        fsdp_shard(self.model)
        self.make_optimizer()  # over the sharded parameters
        self._broadcast_parameters()

    def _make_engine(self, **vllm_kwargs: Any) -> Engine:
        if self.is_main and self.fsdp:  # the learner is about to be sharded: generation needs whole weights
            self.rollout_model = copy.deepcopy(self.model)
        if self.cfg.engine == "vllm":
            # vLLM's set-up is collective over the torchrun world (its external_launcher executor; an engine in
            # rank 0 alone would wait for the others forever): every rank builds one, rank 0's generates
            launcher = {"distributed_executor_backend": "external_launcher", **vllm_kwargs}
            if self.is_main:
                return super()._make_engine(**launcher)
            # the others' never generate: random weights of the policy's shape, nothing read or synced
            self._idle_dir = tempfile.TemporaryDirectory(prefix="rlvr-vllm-")  # removed when the process ends
            self._idle_vllm = make_engine("vllm", self.rollout_model, self.tokenizer, model=self.cfg.model,
                                          save_dir=Path(self._idle_dir.name), seed=self.cfg.seed,
                                          add_special_tokens=self.add_special_tokens,
                                          vllm_kwargs={**self.cfg.vllm_kwargs, **launcher}, dummy_weights=True)
        elif self.is_main:
            return super()._make_engine(**vllm_kwargs)
        # only rank 0 generates; the others need an engine only for sync_weights, a no-op on their own model
        return make_engine("hf", self.model, self.tokenizer, model=self.cfg.model, save_dir=self.out,
                           add_special_tokens=self.add_special_tokens)

    # -- collectives ---------------------------------------------------------------------------------------
    def _all_reduce(self, values: list[float], op: dist.ReduceOp.RedOpType = dist.ReduceOp.SUM) -> list[float]:
        t = torch.tensor(values, dtype=torch.float64, device=self._comm_device)
        dist.all_reduce(t, op=op)
        return t.tolist()

    def _broadcast_object(self, obj: object) -> object:
        box = [obj if self.is_main else None]
        dist.broadcast_object_list(box, src=0, device=self._comm_device)
        return box[0]

    def _broadcast_parameters(self) -> None:
        """Rank 0's whole policy to every rank's learner (as DDP parameters or as FSDP shards)."""
        if self.fsdp:
            self.load_whole_state(self.model, self.rollout_model.state_dict() if self.is_main else {})
            return
        for t in [*self.model.parameters(), *self.model.buffers()]:
            dist.broadcast(t.data, src=0)

    # -- whole states from shards (FSDP); every rank calls these together -----------------------------------
    def whole_state(self, module: torch.nn.Module) -> dict[str, torch.Tensor]:
        return get_model_state_dict(module, options=WHOLE) if self.fsdp else super().whole_state(module)

    def load_whole_state(self, module: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
        """Under FSDP, rank 0's `state` is scattered to every rank's shards (the other ranks pass {})."""
        if not self.fsdp:
            return super().load_whole_state(module, state)
        set_model_state_dict(module, state, options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True))

    def optimizer_state(self) -> dict:
        if not self.fsdp:
            return super().optimizer_state()
        return get_optimizer_state_dict(self.model, self.optimizer, options=WHOLE)

    def load_optimizer_state(self, state: dict) -> None:
        if not self.fsdp:
            return super().load_optimizer_state(state)
        set_optimizer_state_dict(self.model, self.optimizer, state,
                                 options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True))

    def sync_engine(self) -> None:
        if self.fsdp:  # gather the shards into rank 0's whole copy
            state = self.whole_state(self.model)
            if self.is_main:
                self.rollout_model.load_state_dict(state)
        super().sync_engine()

    def reference(self) -> torch.nn.Module:
        if not self.fsdp:
            return super().reference()
        if self.ref_model is None:  # shard for shard, the policy as it is now
            with torch.no_grad():
                for ref, param in zip(self._ref_shell.parameters(), self.model.parameters()):
                    ref.copy_(param)
            self.ref_model = self._ref_shell.eval()
        return self.ref_model

    @property
    def _stop(self) -> bool:
        """A stop request on any rank stops every rank at the same step (the loop reads this once per step)."""
        return self._all_reduce([float(self._stop_requested)], dist.ReduceOp.MAX)[0] > 0

    @_stop.setter
    def _stop(self, value: bool) -> None:
        self._stop_requested = value

    # -- the hooks of the training loop --------------------------------------------------------------------
    def collect(self) -> tuple[list[Group], dict[str, float]]:
        return self._broadcast_object(super().collect() if self.is_main else None)  # type: ignore[return-value]

    def update(self, groups: list[Group]) -> dict[str, float]:
        """Learn on this rank's shard; metrics are averaged over ranks (loss terms then equal the global loss)."""
        metrics = super().update(shard_groups(groups, self.rank, self.world_size))
        keys = sorted(metrics)
        means = self._all_reduce([metrics[k] for k in keys])
        return {k: v / self.world_size for k, v in zip(keys, means)}

    def loss_divisors(self, mask: torch.Tensor) -> tuple[float, float]:
        """Global token and sequence counts over the world size: DDP's average then yields the global loss."""
        tokens, seqs = self._all_reduce(list(super().loss_divisors(mask)))
        return tokens / self.world_size, seqs / self.world_size

    def evaluate(self) -> dict[str, float]:
        return super().evaluate() if self.is_main else {}

    def log(self, record: dict) -> None:
        if self.is_main:
            super().log(record)

    def _warmstart(self) -> None:
        dist.barrier()  # every rank has reset the run directory before rank 0 writes to it
        if self.is_main:
            super()._warmstart()
        self._broadcast_parameters()

    def load(self) -> None:
        """Rank 0 reads the checkpoint and broadcasts it; every rank restores its learner from it."""
        dist.barrier()
        state = self._broadcast_object(self.read_checkpoint() if self.is_main else None)
        self.restore(state)
        if self.is_main:
            self.restore_sampling(state)

    def train(self, resume: bool = False) -> list[dict]:
        try:
            records = super().train(resume=resume)
            dist.barrier()  # every rank's collectives finished (their gloo workers idle) before the teardown
            return records
        finally:
            self.learner = self.model  # DDP's reducer holds the process group: release it before destroying it
            dist.destroy_process_group()


def make_trainer(cfg: TrainConfig) -> Trainer:
    """A DistributedTrainer when launched by torchrun with several ranks, else a plain Trainer."""
    return DistributedTrainer(cfg) if launched() else Trainer(cfg)
