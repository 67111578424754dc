"""The parallel seam of the Trainer: everything that differs between one process and one rank of a torchrun world,
behind one small object the Trainer composes (as `trainer.parallel`). `SingleProcess` is the one-process case;
`rlvr.distributed` has DDP and FSDP. The Trainer calls exactly these hooks:

    is_main                                  this process rolls out, verifies, evaluates, logs and saves
    collective_forwards                      every forward is a collective: the same number of them on each rank
    whole_copy(model)                        the whole policy the engine generates with (FSDP: rank 0's own copy)
    make_engine(name, whole, learner, tok, **) the engine (ranks that never generate: one that only syncs)
    wrap(model, whole, keep_reference)       the learner the loss runs through, starting from the main process's
                                             whole policy on every rank (a DDP wrapper, FSDP shards in place)
    frozen_copy(model)                       pi_ref, a frozen copy of the policy as it is now
    from_main(fn)                            fn() run on the main process, its result on every rank
    shard(groups) / mean(values)             this rank's groups / a mean over ranks (loss divisors, metrics)
    should_stop(requested)                   a stop asked for on any rank stops every rank at the same step
    barrier()                                every rank reaches this point before any goes on
    broadcast_parameters(model, whole)       the main process's whole policy into every rank's learner
    refresh_whole_copy(model, whole)         the learner's weights into the engine's whole copy (FSDP gathers)
    whole_state / load_whole_state           a module's whole state dict (every rank calls these together)
    optimizer_state / load_optimizer_state   the optimizer's whole state dict, likewise
    close()                                  release the process group (the Trainer's teardown)
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, TypeVar

import torch
from transformers import PreTrainedTokenizerBase

from rlvr.rollout import Engine, make_engine
from rlvr.types import Group

T = TypeVar("T")


class SingleProcess:
    """One process holds the whole policy and does everything: every hook is the plain local operation."""

    rank, world_size = 0, 1
    # every forward a collective (FSDP's all-gather): ranks must run the same number of forwards per pass, so the
    # learner's data-dependent layouts (length buckets, identical rows once) are off
    collective_forwards = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def whole_copy(self, model: torch.nn.Module) -> torch.nn.Module:
        return model

    def make_engine(self, name: str, whole: torch.nn.Module, learner: torch.nn.Module,
                    tokenizer: PreTrainedTokenizerBase, **kwargs: Any) -> Engine:
        """`rlvr.rollout.make_engine` over the whole policy; `learner` is the policy being trained, which FSDP
        shards (the same module here)."""
        return make_engine(name, whole, tokenizer, **kwargs)

    def wrap(self, model: torch.nn.Module, whole: torch.nn.Module, keep_reference: bool) -> torch.nn.Module:
        return model

    def frozen_copy(self, model: torch.nn.Module) -> torch.nn.Module:
        return copy.deepcopy(model).eval().requires_grad_(False)

    def from_main(self, fn: Callable[[], T]) -> T:
        return fn()

    def shard(self, groups: list[Group]) -> list[Group]:
        return groups

    def mean(self, values: list[float]) -> list[float]:
        return values

    def should_stop(self, requested: bool) -> bool:
        return requested

    def barrier(self) -> None:
        pass

    def broadcast_parameters(self, model: torch.nn.Module, whole: torch.nn.Module) -> None:
        pass

    def refresh_whole_copy(self, model: torch.nn.Module, whole: torch.nn.Module) -> None:
        pass

    def whole_state(self, module: torch.nn.Module) -> dict[str, torch.Tensor]:
        return module.state_dict()

    def load_whole_state(self, module: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
        module.load_state_dict(state)

    def optimizer_state(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        return optimizer.state_dict()

    def load_optimizer_state(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                             state: dict[str, Any]) -> None:
        optimizer.load_state_dict(state)

    def close(self) -> None:
        pass
