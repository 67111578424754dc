"""Ray, the optional extra `rlvr[ray]`, in one place: the verifier executor and the rollout engine both join the
cluster through `connect`."""

from __future__ import annotations

from typing import Any


def require_ray() -> Any:
    """The `ray` module, or an ImportError that names the extra to install."""
    try:
        import ray
    except ImportError as exc:
        raise ImportError("Ray scale-out needs Ray: pip install 'rlvr[ray]'") from exc
    return ray


def connect(address: str | None = None, **init_kwargs: Any) -> Any:
    """Join the Ray cluster at `address` (None: $RAY_ADDRESS if set, else a fresh local cluster) unless this
    process already has; returns the `ray` module."""
    ray = require_ray()
    if not ray.is_initialized():
        ray.init(address=address, **init_kwargs)
    return ray
