"""Verification in worker processes with real per-item deadlines. A worker that hangs past an item's deadline or
dies is killed and replaced; only the item it was scoring gets an error verdict and the rest of the batch goes on."""

from __future__ import annotations

import multiprocessing.connection as mpc
import threading
from collections import deque
from collections.abc import Callable, Sequence

from rlvr.types import Verdict
from rlvr.verifiers.base import Item, ProgressFn, Verifier, check_executor_options, cpu_count, error_verdict
from rlvr.verifiers.worker import DEFAULT_PRELOAD, MAX_BARREN_DEATHS, Outcome, Worker, dumps


class VerifierPool:
    """Scores (problem, completion) pairs in parallel worker processes, in input order. Each item gets `timeout`
    seconds; an item whose worker hangs past it or dies gets an error verdict ('timeout: ...' / 'crash: ...'), an
    exception raised by the verifier gives 'exception: ...', and the worker is replaced. Items travel in chunks so
    that IPC does not dominate cheap verifiers; the deadline still counts from each item's own start."""

    def __init__(self, num_workers: int | None = None, timeout: float = 30.0, chunk_size: int | None = None,
                 preload: Sequence[str] = DEFAULT_PRELOAD) -> None:
        check_executor_options(timeout, num_workers=num_workers, chunk_size=chunk_size)
        self.num_workers = num_workers or cpu_count()
        self.timeout = timeout
        self.chunk_size = chunk_size
        self.preload = tuple(preload)
        self._workers: list[Worker] = []
        self._lock = threading.Lock()
        self._closed = False

    def map(self, verifier: Verifier, items: Sequence[Item], progress: ProgressFn | None = None) -> list[Verdict]:
        outcomes = self.run(verifier, [tuple(item) for item in items], progress)
        return [value if ok else error_verdict(value) for ok, value in outcomes]

    def run(self, fn: Callable, calls: Sequence[tuple], progress: ProgressFn | None = None) -> list[Outcome]:
        """`fn(*args)` for each args tuple, as (True, result) or (False, reason), in input order."""
        if not calls:
            return []
        blob = dumps(fn)
        with self._lock:
            if self._closed:
                raise RuntimeError("this VerifierPool is closed")
            while len(self._workers) < self.num_workers:
                self._workers.append(Worker(self.preload))
            try:
                return self._run(blob, list(calls), progress)
            except BaseException:
                self._replace_busy()  # their late results must not leak into the next call
                raise

    def _chunks(self, n: int) -> deque[list[int]]:
        size = self.chunk_size or max(1, min(32, n // (4 * self.num_workers)))
        return deque(list(range(i, min(i + size, n))) for i in range(0, n, size))

    def _run(self, blob: bytes, calls: list[tuple], progress: ProgressFn | None) -> list[Outcome]:
        n = len(calls)
        pending = self._chunks(n)
        results: list[Outcome | None] = [None] * n
        done = barren = 0
        while done < n:
            for i, w in enumerate(self._workers):
                if not w.positions and pending:
                    if w.dead():  # died while idle (killed from outside): replace it before use
                        w.kill()
                        w = self._workers[i] = Worker(self.preload)
                    positions = pending.popleft()
                    w.submit(blob, positions, [calls[p] for p in positions])
            busy = [w for w in self._workers if w.positions]
            mpc.wait([w.inbox for w in busy], timeout=min(w.seconds_to_check(self.timeout) for w in busy))
            for i, w in enumerate(self._workers):
                if not w.positions:
                    continue
                state = w.check(self.timeout, "the verifier")
                if state is None:
                    continue
                if state[0] == "done":
                    for p, outcome in zip(w.positions, state[1]):
                        results[p] = outcome
                    done += len(state[1])
                    w.positions = []
                    barren = 0
                    if progress:
                        progress(done, n)
                    continue
                k, reason = state[1]
                self._workers[i] = Worker(self.preload)
                if k is None:  # died or stalled before its first item: nothing to blame, retry the chunk
                    barren += 1
                    if barren >= MAX_BARREN_DEATHS:
                        raise RuntimeError(f"verifier workers keep failing before scoring any item ({reason})")
                    pending.appendleft(w.positions)
                    continue
                results[w.positions[k]] = (False, reason)
                done += 1
                rest = w.positions[:k] + w.positions[k + 1:]  # a chunk's results come back together: redo the rest
                if rest:
                    pending.appendleft(rest)
                if progress:
                    progress(done, n)
        return results  # type: ignore[return-value]

    def _replace_busy(self) -> None:
        for i, w in enumerate(self._workers):
            if w.positions:
                w.kill()
                self._workers[i] = Worker(self.preload)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for w in self._workers:
                w.stop()
            self._workers = []

    def __enter__(self) -> VerifierPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
