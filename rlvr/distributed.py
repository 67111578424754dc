"""The learner under torch.distributed (launched by `torchrun`): the parallel strategies the Trainer composes (see
`rlvr.parallel` for the hooks). gloo on CPU, NCCL on GPU, the policy wrapped in DDP (`strategy="ddp"`) or sharded
by FSDP2 (`strategy="fsdp"`: each rank holds 1/world of the parameters,
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
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                     get_optimizer_state_dict, set_model_state_dict,
                                                     set_optimizer_state_dict)
from torch.distributed.fsdp import fully_shard
from torch.nn.parallel import DistributedDataParallel
from transformers import PreTrainedTokenizerBase

from rlvr.config import TrainConfig
from rlvr.parallel import SingleProcess
from rlvr.rollout import Engine, make_engine
from rlvr.trainer import Trainer
from rlvr.types import Group

T = TypeVar("T")


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


class DataParallel(SingleProcess):
    """One rank of a torchrun world with the policy wrapped in DDP: every rank holds the whole model, rank 0 rolls
    out and broadcasts the groups, each rank learns on its shard, DDP averages the gradients."""

    def __init__(self, device: str = "auto") -> None:
        self.rank, self.world_size = init_process_group(device)
        self.comm_device = torch.device("cpu")  # where collectives' tensors live: the GPU under NCCL

    def make_engine(self, name: str, whole: torch.nn.Module, learner: torch.nn.Module,
                    tokenizer: PreTrainedTokenizerBase, **kwargs: Any) -> Engine:
        """Rank 0's engine generates. vLLM's set-up is collective over the torchrun world (its external_launcher
        executor; an engine in rank 0 alone would wait for the others forever), so every rank builds one; the
        others' hold random weights of the policy's shape and never generate. Without vLLM the other ranks get an
        hf engine on their own model, whose weight sync is a no-op."""
        if name == "vllm":
            launcher = {"distributed_executor_backend": "external_launcher"}
            kwargs["vllm_kwargs"] = {**kwargs.get("vllm_kwargs", {}), **launcher}
        if self.is_main:
            return make_engine(name, whole, tokenizer, **kwargs)
        if name == "vllm":
            self._idle_dir = tempfile.TemporaryDirectory(prefix="rlvr-vllm-")  # removed when the process ends
            self._idle_vllm = make_engine("vllm", whole, tokenizer, **{**kwargs, "save_dir": Path(self._idle_dir.name),
                                                                       "dummy_weights": True})
        return make_engine("hf", learner, tokenizer, **kwargs)

    def wrap(self, model: torch.nn.Module, whole: torch.nn.Module, keep_reference: bool) -> torch.nn.Module:
        """DDP's wrapper, whose construction broadcasts rank 0's parameters and buffers. Not again at every forward
        (`broadcast_buffers`): the policy's buffers (rotary frequencies) never change, and ranks run different
        numbers of forwards per pass (length buckets, identical rows once), which a collective each would hang."""
        if dist.get_backend() == "nccl":
            self.comm_device = model.device
        on_gpu = model.device.type == "cuda"
        return DistributedDataParallel(model, device_ids=[model.device.index] if on_gpu else None,
                                       broadcast_buffers=False)

    # -- collectives ---------------------------------------------------------------------------------------
    def _all_reduce(self, values: list[float], op: dist.ReduceOp.RedOpType = dist.ReduceOp.SUM) -> list[float]:
        t = torch.tensor(values, dtype=torch.float64, device=self.comm_device)
        dist.all_reduce(t, op=op)
        return t.tolist()

    def from_main(self, fn: Callable[[], T]) -> T:
        box = [fn() if self.is_main else None]
        dist.broadcast_object_list(box, src=0, device=self.comm_device)
        return box[0]  # type: ignore[return-value]

    def shard(self, groups: list[Group]) -> list[Group]:
        return shard_groups(groups, self.rank, self.world_size)

    def mean(self, values: list[float]) -> list[float]:
        """The mean over ranks. Of the loss divisors (global token and sequence counts over the world size), it
        makes DDP's gradient average the global loss's gradient; of metrics, the loss terms equal the global ones."""
        return [v / self.world_size for v in self._all_reduce(values)]

    def should_stop(self, requested: bool) -> bool:
        """An all-reduce: every rank must call it at the same point (the loop does, once per step)."""
        return self._all_reduce([float(requested)], dist.ReduceOp.MAX)[0] > 0

    def barrier(self) -> None:
        dist.barrier()

    def broadcast_parameters(self, model: torch.nn.Module, whole: torch.nn.Module) -> None:
        for t in [*model.parameters(), *model.buffers()]:
            dist.broadcast(t.data, src=0)

    def close(self) -> None:
        """Destroy the process group (the Trainer lets go of its DDP wrapper first: its reducer holds the group)."""
        if dist.is_initialized():
            dist.destroy_process_group()


class FullyShardedDataParallel(DataParallel):
    """One rank of a torchrun world with the policy sharded by FSDP2: each rank holds 1/world of the parameters,
    gradients and optimizer state; rank 0 also keeps a whole copy for its rollout engine, refreshed from the
    shards after every update, and pi_ref is a sharded copy too. Every forward all-gathers the shards, so each
    rank runs the plain layout (`collective_forwards`)."""

    collective_forwards = True

    def whole_copy(self, model: torch.nn.Module) -> torch.nn.Module:
        return copy.deepcopy(model) if self.is_main else model  # taken before the learner is sharded

    def wrap(self, model: torch.nn.Module, whole: torch.nn.Module, keep_reference: bool) -> torch.nn.Module:
        """`model` sharded in place, its shards loaded from rank 0's whole copy."""
        if dist.get_backend() == "nccl":
            self.comm_device = model.device
        # FSDP modules cannot be deep-copied: the reference's shell is sharded now and loaded when first used
        self._ref_shell = fsdp_shard(copy.deepcopy(model)).requires_grad_(False) if keep_reference else None
        fsdp_shard(model)
        self.broadcast_parameters(model, whole)
        return model

    def frozen_copy(self, model: torch.nn.Module) -> torch.nn.Module:
        """Shard for shard, the policy as it is now."""
        if self._ref_shell is None:
            raise RuntimeError("this run keeps no reference model (beta = 0)")
        with torch.no_grad():
            for ref, param in zip(self._ref_shell.parameters(), model.parameters()):
                ref.copy_(param)
        return self._ref_shell.eval()

    def broadcast_parameters(self, model: torch.nn.Module, whole: torch.nn.Module) -> None:
        self.load_whole_state(model, whole.state_dict() if self.is_main else {})

    def refresh_whole_copy(self, model: torch.nn.Module, whole: torch.nn.Module) -> None:
        state = self.whole_state(model)
        if self.is_main:
            whole.load_state_dict(state)

    def whole_state(self, module: torch.nn.Module) -> dict[str, torch.Tensor]:
        return get_model_state_dict(module, options=WHOLE)

    def load_whole_state(self, module: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
        """Rank 0's `state` is scattered to every rank's shards (the other ranks pass {})."""
        set_model_state_dict(module, state, options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True))

    def optimizer_state(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        return get_optimizer_state_dict(model, optimizer, options=WHOLE)

    def load_optimizer_state(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                             state: dict[str, Any]) -> None:
        set_optimizer_state_dict(model, optimizer, state,
                                 options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True))


STRATEGIES = {"ddp": DataParallel, "fsdp": FullyShardedDataParallel}


class DistributedTrainer(Trainer):
    """A Trainer that is one rank of a torchrun job, with the strategy `cfg.strategy` ("ddp" or "fsdp").
    `minibatch_size` and `micro_batch_size` count completions per rank; `--resume` on several nodes reads the
    checkpoint on rank 0 only and broadcasts it."""

    def __init__(self, cfg: TrainConfig) -> None:
        if cfg.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be 'ddp' or 'fsdp', got {cfg.strategy!r}")
        super().__init__(cfg, parallel=STRATEGIES[cfg.strategy](cfg.device))


def make_trainer(cfg: TrainConfig) -> Trainer:
    """A DistributedTrainer when launched by torchrun with several ranks, else a plain Trainer."""
    return DistributedTrainer(cfg) if launched() else Trainer(cfg)
