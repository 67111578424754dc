"""Executors by name, as the trainer, the envs and the CLI choose them: "serial", "process" or "ray"."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rlvr.verifiers.base import Executor, SerialExecutor
from rlvr.verifiers.pool import VerifierPool


def _ray_executor(**kwargs: Any) -> Executor:
    from rlvr.verifiers.ray_executor import RayExecutor  # Ray is an optional extra, imported only when asked for

    return RayExecutor(**kwargs)


EXECUTORS: dict[str, Callable[..., Executor]] = {"serial": SerialExecutor, "process": VerifierPool,
                                                 "ray": _ray_executor}


def make_executor(name: str, **kwargs: Any) -> Executor:
    """An executor by name: "serial" (in the calling process), "process" (a VerifierPool taking `kwargs`) or
    "ray" (a RayExecutor taking `kwargs`, e.g. address and num_workers)."""
    if name not in EXECUTORS:
        raise ValueError(f"unknown executor {name!r}; known: {', '.join(sorted(EXECUTORS))}")
    return EXECUTORS[name](**kwargs)
