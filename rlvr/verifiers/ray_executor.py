"""Verification on a Ray cluster (optional extra `rlvr[ray]`). Each Ray actor runs a local `VerifierPool`, so the
per-item deadlines, crash isolation and verdicts are exactly the pool's; the executor adds what Ray brings:
workers on many machines, and actors that die (node lost, OOM, killed) replaced while the batch goes on."""

from __future__ import annotations

import math
import os
from collections import deque
from collections.abc import Sequence
from typing import Any

from rlvr.cluster import connect, require_ray
from rlvr.types import Verdict
from rlvr.verifiers.base import Item, ProgressFn, Verifier, check_executor_options, error_verdict
from rlvr.verifiers.pool import VerifierPool
from rlvr.verifiers.worker import DEFAULT_PRELOAD, MAX_BARREN_DEATHS


class _PoolActor:
    """Body of one Ray actor: a VerifierPool on the actor's node."""

    def __init__(self, num_workers: int, timeout: float, chunk_size: int | None, preload: Sequence[str]) -> None:
        self.pool = VerifierPool(num_workers, timeout, chunk_size, preload)

    def map(self, verifier: Verifier, items: list[Item]) -> list[Verdict]:
        return self.pool.map(verifier, items)

    def pid(self) -> int:
        return os.getpid()


class RayExecutor:
    """Scores (problem, completion) pairs on `num_workers` Ray actors, each running a `VerifierPool` of
    `workers_per_actor` processes, in input order. Chunks of `chunk_size` items go to whichever actor is free.
    If an actor dies with a chunk in flight, it is replaced and the chunk's items are retried one by one; an
    item whose own actor dies gets a 'crash: ...' verdict, as in the local pool. Without `num_workers`, the
    actors fill the CPUs the cluster has free when the first batch arrives."""

    def __init__(self, address: str | None = None, num_workers: int | None = None, workers_per_actor: int = 1,
                 timeout: float = 30.0, chunk_size: int | None = None,
                 preload: Sequence[str] = DEFAULT_PRELOAD) -> None:
        check_executor_options(timeout, num_workers=num_workers, workers_per_actor=workers_per_actor,
                               chunk_size=chunk_size)
        require_ray()
        self.address, self.num_workers, self.workers_per_actor = address, num_workers, workers_per_actor
        self.timeout, self.chunk_size, self.preload = timeout, chunk_size, tuple(preload)
        self._actors: list[Any] = []  # started on first use, so that building an executor costs nothing
        self._closed = False

    def _start(self) -> Any:
        if self._closed:
            raise RuntimeError("this RayExecutor is closed")
        ray = connect(self.address)
        if not self._actors:
            if self.num_workers is None:  # one actor per workers_per_actor CPUs that no other actor holds
                cpus = int(ray.available_resources().get("CPU", 0))
                self.num_workers = max(1, cpus // self.workers_per_actor)
            self._actors = [self._new_actor(ray) for _ in range(self.num_workers)]
        return ray

    def _new_actor(self, ray: Any) -> Any:
        cls = ray.remote(_PoolActor).options(num_cpus=self.workers_per_actor, max_restarts=0)
        return cls.remote(self.workers_per_actor, self.timeout, None, self.preload)

    def _replace(self, ray: Any, i: int) -> None:
        ray.kill(self._actors[i], no_restart=True)
        self._actors[i] = self._new_actor(ray)

    def worker_pids(self) -> list[int]:
        """Process ids of the actors (starting them if needed): a handle for tests and diagnostics."""
        ray = self._start()
        return ray.get([a.pid.remote() for a in self._actors])

    def map(self, verifier: Verifier, items: Sequence[Item], progress: ProgressFn | None = None) -> list[Verdict]:
        if not items:
            return []
        ray = self._start()
        n = len(items)
        size = self.chunk_size or max(1, min(256, math.ceil(n / (4 * len(self._actors)))))
        pending = deque(list(range(i, min(i + size, n))) for i in range(0, n, size))
        verifier_ref = ray.put(verifier)  # shipped once, whatever the number of chunks
        in_flight: dict[Any, tuple[int, list[int]]] = {}  # result ref -> (actor index, input positions)
        results: list[Verdict | None] = [None] * n
        done = barren = 0
        try:
            while done < n:
                busy = {i for i, _ in in_flight.values()}
                for i, actor in enumerate(self._actors):
                    if i not in busy and pending:
                        positions = pending.popleft()
                        ref = actor.map.remote(verifier_ref, [tuple(items[p]) for p in positions])
                        in_flight[ref] = (i, positions)
                ready, _ = ray.wait(list(in_flight), num_returns=1)
                i, positions = in_flight.pop(ready[0])
                try:
                    verdicts = ray.get(ready[0])
                except ray.exceptions.RayActorError as exc:
                    self._replace(ray, i)
                    barren += 1
                    if barren >= MAX_BARREN_DEATHS * len(self._actors):
                        raise RuntimeError(f"Ray verifier actors keep dying without scoring anything: {exc}") from exc
                    if len(positions) > 1:  # unknown which item killed it: retry each on its own
                        pending.extendleft([p] for p in reversed(positions))
                        continue
                    verdicts = [error_verdict("crash: Ray worker died while scoring this item")]
                else:
                    barren = 0
                for p, verdict in zip(positions, verdicts):
                    results[p] = verdict
                done += len(positions)
                if progress:
                    progress(done, n)
        except BaseException:
            for i, _ in in_flight.values():  # their late results must not leak into the next call
                self._replace(ray, i)
            raise
        return results  # type: ignore[return-value]

    def close(self) -> None:
        if self._actors:
            ray = require_ray()
            for actor in self._actors:
                ray.kill(actor, no_restart=True)
        self._actors, self._closed = [], True

    def __enter__(self) -> RayExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
