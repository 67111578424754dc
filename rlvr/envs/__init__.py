"""Environments: PromptEnv, grouped vector envs, task sources, and their registration in Gymnasium's registry
under the `rlvr` namespace. Plugins declare more envs through the `rlvr.envs` entry-point group: each entry
point names a callable (or module) that registers its envs with `rlvr.register` when first needed."""

from __future__ import annotations

import importlib.util
from typing import Any

import gymnasium as gym

from rlvr.envs.builtin import BUILTIN_ENVS, OPTIONAL_ENVS, TINY_DEFAULTS
from rlvr.envs.prompt_env import PromptEnv
from rlvr.envs.vector import GroupVectorEnv, to_groups
from rlvr.registry import iter_plugins, suggest
from rlvr.verifiers.base import Executor

ENV_PLUGIN_GROUP = "rlvr.envs"
_plugins_loaded = False


_rlvr_ids: set[str] = set()
_tiny_defaults: dict[str, dict[str, Any]] = {}


def register(id: str, entry_point: Any, tiny_defaults: dict[str, Any] | None = None, **kwargs: Any) -> None:
    """Register an env with Gymnasium (the same call as `gymnasium.register`) and list it in `rlvr list`.
    `tiny_defaults` are TrainConfig values that `rlvr train --env ID` uses with the built-in tiny model (the
    generation budget, the warm-start, env kwargs), below a config file's and the command line's."""
    gym.register(id=id, entry_point=entry_point, **kwargs)
    _rlvr_ids.add(id)
    if tiny_defaults:
        _tiny_defaults[id] = dict(tiny_defaults)


def tiny_defaults(id: str) -> dict[str, Any]:
    """The TrainConfig values registered for training the tiny model on env `id` ({} if none)."""
    if id not in gym.registry:
        load_plugins()
    return dict(_tiny_defaults.get(id, {}))


def load_plugins() -> None:
    """Run every `rlvr.envs` entry point once: each registers its envs; a broken one only warns."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for _ep, obj in iter_plugins(ENV_PLUGIN_GROUP):
        before = set(gym.registry)
        if callable(obj):
            obj()
        _rlvr_ids.update(set(gym.registry) - before)


def names() -> list[str]:
    """Ids of every env that rlvr knows: built-in, plugin, and anything registered with `rlvr.register`."""
    load_plugins()
    return sorted(_rlvr_ids & set(gym.registry))


def make(id: str, **kwargs: Any) -> gym.Env:
    """`gymnasium.make` that also finds envs declared by plugins."""
    if id not in gym.registry:
        load_plugins()
    if id not in gym.registry:
        raise gym.error.NameNotFound(f"unknown env {id!r}; rlvr knows: {', '.join(names())}."
                                     + suggest(id, names()))
    return gym.make(id, **kwargs)


def make_vec(id: str, num_prompts: int, group_size: int, executor: str | Executor = "process",
             num_workers: int | None = None, **kwargs: Any) -> GroupVectorEnv:
    """A GroupVectorEnv of `num_prompts * group_size` slots over env `id`; `executor` is "process" (a verifier
    pool, the default), "serial", or any object with `map(verifier, items)` and `close()`."""
    from rlvr.verifiers import make_executor

    env = make(id, **kwargs).unwrapped
    if not isinstance(env, PromptEnv):
        raise TypeError(f"{id} is not a PromptEnv (got {type(env).__name__}); make_vec needs one")
    if isinstance(executor, str):
        executor = make_executor(executor, **({"num_workers": num_workers} if num_workers else {}))
    return GroupVectorEnv(env, num_prompts=num_prompts, group_size=group_size, executor=executor)


for _id, _factory in BUILTIN_ENVS.items():
    register(_id, f"rlvr.envs.builtin:{_factory.__name__}", tiny_defaults=TINY_DEFAULTS.get(_id))
for _id, (_factory, _package) in OPTIONAL_ENVS.items():
    if importlib.util.find_spec(_package) is not None:
        register(_id, f"rlvr.envs.builtin:{_factory.__name__}", tiny_defaults=TINY_DEFAULTS.get(_id))

__all__ = ["GroupVectorEnv", "PromptEnv", "load_plugins", "make", "make_vec", "names", "register", "tiny_defaults",
           "to_groups"]
