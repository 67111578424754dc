"""The deadline worker process: a fresh interpreter that applies a pickled callable to chunks of argument tuples
and publishes in shared memory which item runs since when, so that its parent can kill it the moment one item
runs past its deadline. `VerifierPool` keeps several; `call_with_deadline` runs one call in one from any thread."""

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
from collections.abc import Callable, Sequence
from typing import Any

IDLE = -1.0  # the worker's published item index while it scores no item
STARTUP_TIMEOUT = 120.0  # seconds a fresh worker may spend importing and unpickling before it starts an item
MAX_BARREN_DEATHS = 3  # workers in a row that die before scoring any item: the verifier cannot be run at all
DEFAULT_PRELOAD = ("math_verify",)

Outcome = tuple[bool, Any]  # (True, result) or (False, "timeout: ..." / "crash: ..." / "exception: ...")

_in_worker = False


def in_worker() -> bool:
    """True inside a worker process, whose parent enforces the deadline by killing it: heavy work may run inline."""
    return _in_worker


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


class Worker:
    """Parent-side handle of one worker: a fresh `python -c` process in its own process group (so it imports only
    what the verifier needs, never the caller's script), two pipes, and a shared (item index, start time) pair."""

    def __init__(self, preload: Sequence[str]) -> None:
        with tempfile.TemporaryFile() as f:
            f.truncate(16)
            self._map = mmap.mmap(f.fileno(), 16)
            from_parent, to_child = os.pipe()
            from_child, to_parent = os.pipe()
            child_fds = (from_parent, to_parent, f.fileno())
            code = (f"import sys; sys.path[:] = {sys.path!r}; from rlvr.verifiers.worker import serve; "
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

    def check(self, timeout: float, what: str) -> tuple[str, Any] | None:
        """Look at the worker once its inbox is ready or its time to check has come: ("done", outcomes) when its
        chunk came back, ("failed", (index in the chunk or None, reason)) when it died or ran past its deadline
        (it is killed then), None while it is still in time. A callable (`what`) it cannot unpickle raises."""
        message = self.receive()
        if message is not None and message[0] == "load-error":
            raise RuntimeError(f"a worker could not unpickle {what} (define it in an importable module, not in "
                               f"__main__): {message[1]}")
        if message is not None and message[0] == "done":
            return message
        dead = message is not None or self.dead()
        if not dead and time.monotonic() < self.deadline(timeout):
            return None
        running = self.running()
        self.kill()
        reason = (f"crash: worker process died ({self.death()})" if dead else
                  f"timeout: no verdict within the {timeout:g} s deadline; worker killed")
        return "failed", (None if running is None else running[0], reason)

    def _release(self) -> None:
        self.inbox.close()
        self.outbox.close()
        self.state.release()
        self._map.close()


def dumps(fn: Any) -> bytes:
    """`fn` pickled for a worker, or a TypeError that says it cannot travel."""
    try:
        return pickle.dumps(fn)
    except Exception as exc:
        raise TypeError(f"{fn!r} cannot be pickled for worker processes: {exc}") from exc


class Sidecars:
    """Idle single workers kept per process for `call_with_deadline`; concurrent callers each get their own."""

    def __init__(self, keep: int = 4) -> None:
        self.keep = keep
        self.idle: list[Worker] = []
        self.lock = threading.Lock()

    def checkout(self) -> Worker:
        with self.lock:
            while self.idle:
                worker = self.idle.pop()
                if not worker.dead():
                    return worker
                worker.kill()
        return Worker(DEFAULT_PRELOAD)

    def checkin(self, worker: Worker) -> None:
        with self.lock:
            if len(self.idle) < self.keep:
                self.idle.append(worker)
                return
        worker.stop()


_sidecars = Sidecars()


def stop_helpers() -> None:
    """Stop the idle workers `call_with_deadline` keeps, and with them what they started (a tool's sandboxes)."""
    with _sidecars.lock:
        idle, _sidecars.idle = _sidecars.idle, []
    for worker in idle:
        worker.stop()


def call_with_deadline(fn: Callable, args: tuple, timeout: float) -> Outcome:
    """`fn(*args)` in a worker process, killed if it runs past `timeout` seconds (counted from the call's own
    start, not the worker's start-up). Safe from any thread. Returns (True, result) or (False, reason)."""
    blob = dumps(fn)
    worker = _sidecars.checkout()
    try:
        worker.submit(blob, [0], [args])
        while True:
            mpc.wait([worker.inbox], timeout=worker.seconds_to_check(timeout))
            state = worker.check(timeout, repr(fn))
            if state is None:
                continue
            if state[0] == "failed":
                return False, state[1][1]
            worker.positions = []
            _sidecars.checkin(worker)
            return state[1][0]
    except BaseException:  # an interrupted caller must not leave a busy worker behind
        if worker.proc.poll() is None:
            worker.kill()
        raise
