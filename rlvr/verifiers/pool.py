"""Verification in worker processes with real per-item deadlines. A worker that hangs past an item's deadline or
dies is killed and replaced; only the item it was scoring gets an error verdict and the rest of the batch goes on.
Workers of the same kind back `call_with_deadline`, which runs one call under a hard deadline from any thread."""

from __future__ import annotations

import importlib
import mmap
import multiprocessing.connection as mpc
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from rlvr.types import Verdict
from rlvr.verifiers.base import Executor, Item, ProgressFn, SerialExecutor, Verifier

IDLE = -1.0  # the worker's published item index while it scores no item
STARTUP_TIMEOUT = 120.0  # seconds a fresh worker may spend importing and unpickling before it starts an item
MAX_BARREN_DEATHS = 3  # workers in a row that die before scoring any item: the verifier cannot be run at all
DEFAULT_PRELOAD = ("math_verify",)

Outcome = tuple[bool, Any]  # (True, result) or (False, "timeout: ..." / "crash: ..." / "exception: ...")

_in_worker = False


def cpu_count() -> int:
    """CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def in_worker() -> bool:
    """True inside a worker process, whose parent enforces the deadline by killing it: heavy work may run inline."""
    return _in_worker


def error_verdict(error: str) -> Verdict:
    """Reward 0, not correct, with the reason."""
    return Verdict(reward=0.0, correct=False, error=error)


def _exit_when_orphaned(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


def serve(read_fd: int, write_fd: int, state_fd: int, preload: Sequence[str] = ()) -> None:
    """Worker process main loop: apply the received callable to each argument tuple of each chunk, publishing in
    shared memory which item runs since when, and send the outcomes back."""
    global _in_worker
    _in_worker = True
    for fd in (read_fd, write_fd, state_fd):
        os.set_inheritable(fd, False)  # programs a verifier starts must not hold the parent's pipe open
    threading.Thread(target=_exit_when_orphaned, args=(os.getppid(),), daemon=True).start()
    for module in preload:  # only a head start: a verifier that needs a missing module fails on its own
        try:
            importlib.import_module(module)
        except ImportError:
            pass
    state = memoryview(mmap.mmap(state_fd, 16)).cast("d")
    inbox, outbox = mpc.Connection(read_fd, writable=False), mpc.Connection(write_fd, readable=False)
    blob, fn = None, None
    while True:
        try:
            msg = inbox.recv()
        except (EOFError, OSError):  # the parent is gone
            return
        if msg is None:
            return
        new_blob, calls = msg
        if new_blob != blob:
            try:
                fn, blob = pickle.loads(new_blob), new_blob
            except Exception as exc:
                outbox.send(("load-error", f"{type(exc).__name__}: {exc}"))
                continue
        out: list[Outcome] = []
        for k, args in enumerate(calls):
            state[1] = time.monotonic()
            state[0] = k
            try:
                out.append((True, fn(*args)))
            except Exception as exc:
                out.append((False, f"exception: {type(exc).__name__}: {exc}"))
        state[0] = IDLE
        try:
            outbox.send(("done", out))
        except Exception as exc:  # a result that cannot be pickled
            outbox.send(("done", [(False, f"exception: result could not be sent back: {exc}")] * len(calls)))


class _Worker:
    """Parent-side handle of one worker: a fresh `python -c` process in its own process group (so it imports only
    what the verifier needs, never the caller's script), two pipes, and a shared (item index, start time) pair."""

    def __init__(self, preload: Sequence[str]) -> None:
        with tempfile.TemporaryFile() as f:
            f.truncate(16)
            self._map = mmap.mmap(f.fileno(), 16)
            from_parent, to_child = os.pipe()
            from_child, to_parent = os.pipe()
            child_fds = (from_parent, to_parent, f.fileno())
            code = (f"import sys; sys.path[:] = {sys.path!r}; from rlvr.verifiers.pool import serve; "
                    f"serve({from_parent}, {to_parent}, {f.fileno()}, {tuple(preload)!r})")
            self.proc = subprocess.Popen([sys.executable, "-c", code], pass_fds=child_fds, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
            for fd in (from_parent, to_parent):
                os.close(fd)
        self.state = memoryview(self._map).cast("d")
        self.state[0] = IDLE
        self.inbox, self.outbox = mpc.Connection(from_child, writable=False), mpc.Connection(to_child, readable=False)
        self.positions: list[int] = []  # input positions of the chunk in flight; empty when idle
        self.sent_at = 0.0

    def submit(self, blob: bytes, positions: list[int], calls: list[tuple]) -> None:
        self.positions, self.sent_at = positions, time.monotonic()
        self.outbox.send((blob, calls))

    def running(self) -> tuple[int, float] | None:
        """(index in the chunk, start time) of the item being scored, or None between items."""
        k = int(self.state[0])
        return None if k < 0 else (k, self.state[1])

    def deadline(self, timeout: float) -> float:
        """When the worker is out of time: its item's start plus `timeout`, or the start-up allowance."""
        now_running = self.running()
        return now_running[1] + timeout if now_running else self.sent_at + STARTUP_TIMEOUT

    def seconds_to_check(self, timeout: float) -> float:
        """How long the parent may sleep: an item that starts from now on cannot expire before `timeout`."""
        now = time.monotonic()
        limit = self.deadline(timeout) if self.running() else min(self.deadline(timeout), now + timeout)
        return max(0.001, limit - now)

    def receive(self) -> tuple[str, Any] | None:
        """The worker's message if one is waiting; None if not; ("died", None) if its pipe closed."""
        if not self.inbox.poll():
            return None
        try:
            return self.inbox.recv()
        except (EOFError, OSError):
            return "died", None

    def dead(self) -> bool:
        return self.proc.poll() is not None

    def death(self) -> str:
        code = self.proc.wait()
        return f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"

    def kill(self) -> None:
        """SIGKILL the worker's whole process group, reap it and release its pipes."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        self._release()

    def stop(self) -> None:
        """Ask the worker to exit; kill it if it does not within a second."""
        try:
            self.outbox.send(None)
            self.proc.wait(1.0)
        except (OSError, subprocess.TimeoutExpired):
            self.kill()
            return
        self._release()

    def _release(self) -> None:
        self.inbox.close()
        self.outbox.close()
        self.state.release()
        self._map.close()


def _dumps(fn: Any) -> bytes:
    try:
        return pickle.dumps(fn)
    except Exception as exc:
        raise TypeError(f"{fn!r} cannot be pickled for worker processes: {exc}") from exc


class VerifierPool:
    """Scores (problem, completion) pairs in parallel worker processes, in input order. Each item gets `timeout`
    seconds; an item whose worker hangs past it or dies gets an error verdict ('timeout: ...' / 'crash: ...'), an
    exception raised by the verifier gives 'exception: ...', and the worker is replaced. Items travel in chunks so
    that IPC does not dominate cheap verifiers; the deadline still counts from each item's own start."""

    def __init__(self, num_workers: int | None = None, timeout: float = 30.0, chunk_size: int | None = None,
                 preload: Sequence[str] = DEFAULT_PRELOAD) -> None:
        if num_workers is not None and num_workers < 1:
            raise ValueError(f"num_workers must be >= 1, got {num_workers}")
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
        if chunk_size is not None and chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        self.num_workers = num_workers or cpu_count()
        self.timeout = timeout
        self.chunk_size = chunk_size
        self.preload = tuple(preload)
        self._workers: list[_Worker] = []
        self._lock = threading.Lock()
        self._closed = False

    def map(self, verifier: Verifier, items: Sequence[Item], progress: ProgressFn | None = None) -> list[Verdict]:
        outcomes = self.run(verifier, [tuple(item) for item in items], progress)
        return [value if ok else error_verdict(value) for ok, value in outcomes]

    def run(self, fn: Callable, calls: Sequence[tuple], progress: ProgressFn | None = None) -> list[Outcome]:
        """`fn(*args)` for each args tuple, as (True, result) or (False, reason), in input order."""
        if not calls:
            return []
        blob = _dumps(fn)
        with self._lock:
            if self._closed:
                raise RuntimeError("this VerifierPool is closed")
            while len(self._workers) < self.num_workers:
                self._workers.append(_Worker(self.preload))
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
                        w = self._workers[i] = _Worker(self.preload)
                    positions = pending.popleft()
                    w.submit(blob, positions, [calls[p] for p in positions])
            busy = [w for w in self._workers if w.positions]
            mpc.wait([w.inbox for w in busy], timeout=min(w.seconds_to_check(self.timeout) for w in busy))
            for i, w in enumerate(self._workers):
                if not w.positions:
                    continue
                message = w.receive()
                if message is not None and message[0] == "load-error":
                    raise RuntimeError(f"a worker could not unpickle the verifier (define it in an importable "
                                       f"module, not in __main__): {message[1]}")
                if message is not None and message[0] == "done":
                    for p, outcome in zip(w.positions, message[1]):
                        results[p] = outcome
                    done += len(message[1])
                    w.positions = []
                    barren = 0
                    if progress:
                        progress(done, n)
                    continue
                dead = message is not None or w.dead()
                if not dead and time.monotonic() < w.deadline(self.timeout):
                    continue
                running = w.running()
                w.kill()
                reason = (f"crash: worker process died ({w.death()}) while scoring this item" if dead else
                          f"timeout: no verdict within the {self.timeout:g} s deadline; worker killed")
                self._workers[i] = _Worker(self.preload)
                if running is None:  # died or stalled before its first item: nothing to blame, retry the chunk
                    barren += 1
                    if barren >= MAX_BARREN_DEATHS:
                        raise RuntimeError(f"verifier workers keep failing before scoring any item ({reason})")
                    pending.appendleft(w.positions)
                    continue
                k = running[0]
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
                self._workers[i] = _Worker(self.preload)

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


class _Sidecars:
    """Idle single workers kept per process for `call_with_deadline`; concurrent callers each get their own."""

    def __init__(self, keep: int = 4) -> None:
        self.keep = keep
        self.idle: list[_Worker] = []
        self.lock = threading.Lock()

    def checkout(self) -> _Worker:
        with self.lock:
            while self.idle:
                worker = self.idle.pop()
                if not worker.dead():
                    return worker
                worker.kill()
        return _Worker(DEFAULT_PRELOAD)

    def checkin(self, worker: _Worker) -> None:
        with self.lock:
            if len(self.idle) < self.keep:
                self.idle.append(worker)
                return
        worker.stop()


_sidecars = _Sidecars()


def call_with_deadline(fn: Callable, args: tuple, timeout: float) -> Outcome:
    """`fn(*args)` in a worker process, killed if it runs past `timeout` seconds (counted from the call's own
    start, not the worker's start-up). Safe from any thread. Returns (True, result) or (False, reason)."""
    blob = _dumps(fn)
    worker = _sidecars.checkout()
    try:
        worker.submit(blob, [0], [args])
        while True:
            mpc.wait([worker.inbox], timeout=worker.seconds_to_check(timeout))
            message = worker.receive()
            if message is not None and message[0] == "done":
                worker.positions = []
                _sidecars.checkin(worker)
                return message[1][0]
            if message is not None and message[0] == "load-error":
                raise RuntimeError(f"a worker could not unpickle {fn!r}: {message[1]}")
            dead = message is not None or worker.dead()
            if dead or time.monotonic() >= worker.deadline(timeout):
                worker.kill()
                if dead:
                    return False, f"crash: worker process died ({worker.death()})"
                return False, f"timeout: no result within the {timeout:g} s deadline; worker killed"
    except BaseException:  # an interrupted caller must not leave a busy worker behind
        if worker.proc.poll() is None:
            worker.kill()
        raise


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
