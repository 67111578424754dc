"""The host side of the sandbox: choose the isolation, keep this process's persistent sandboxes (one per
concurrent caller), and pump each job's pipes under a deadline."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import threading
import time
from typing import Any

from rlvr.verifiers.sandbox.inside import FRAME, SANDBOX_DIR, remove_tree, send_frame
from rlvr.verifiers.sandbox.isolation import HARNESS_PATH, INSIDE_PATH, LEVELS, bwrap_argv, host_python, unshare_argv

UID_BASE = 61000  # root hosts run candidates as UID_BASE + slot, one uid per live sandbox
UID_SLOTS = 512
REPLY_TIMEOUT_S = 10.0  # how long the host waits for a server to confirm that a job's processes are gone
DEFAULT_LIMITS = {  # per verification; times in seconds, `timeout_s` bounds each test's wall time
    "timeout_s": 5.0, "cpu_s": 5, "memory_mb": 1024, "max_procs": 32, "max_file_mb": 16, "max_open_files": 64,
    "max_output_bytes": 1 << 20, "tmpfs_mb": 64,
}
Limits = dict[str, Any]


def run(job: dict[str, Any], tests: dict[str, Any], limits: Limits, level: str, scratch_root: str | None = None,
        python: str | None = None) -> dict[str, Any]:
    """Run one job and return the harness's report, or {"status": "error", "cause": ...} when it ran out of time
    or output, or ended without reporting. `job` (the candidate program and options) reaches the candidates; `tests`
    reaches only the trusted harness. `bwrap`/`unshare` jobs run in this process's persistent sandboxes; `none`
    runs each job in a sandbox of its own. Below bwrap, a host scratch dir under `scratch_root` is the working dir."""
    if level not in LEVELS:
        raise ValueError(f"unknown isolation {level!r}; expected one of {LEVELS}")
    return _POOL.run((level, python or host_python(), limits["tmpfs_mb"]), job, tests, limits, scratch_root)


def shutdown() -> None:
    """Stop every sandbox of this process and wait until their processes are gone. Runs at exit; the next job
    starts a new sandbox. Call it only while no verification runs in this process."""
    with _POOL.lock:
        boxes, _POOL.live, _POOL.idle = _POOL.live, [], []
    for box in boxes:  # every server starts exiting at once
        box.control.close()
    for box in boxes:
        box.close(graceful=True)


def stats() -> dict[str, int]:
    """Sandboxes this process started (since import or its fork), live now, and idle now."""
    with _POOL.lock:
        return {"started": _POOL.started, "live": len(_POOL.live), "idle": len(_POOL.idle)}


class Sandbox:
    """One persistent sandbox: a trusted server that runs one job at a time and, after each, kills all the job
    started and wipes the scratch dirs, then confirms. A sandbox whose job did not end with a report, or whose
    server cannot confirm, is discarded. A `none` sandbox (no namespaces to sweep) serves a single job."""

    def __init__(self, level: str, python: str, tmpfs_mb: int) -> None:
        import subprocess
        self.level, self.reusable = level, True
        self.slot = _UidSlot()
        boot_host, boot_server = socket.socketpair()
        host, server = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            script = HARNESS_PATH if level == "bwrap" else INSIDE_PATH
            prefix = {"bwrap": bwrap_argv(python, tmpfs_mb), "unshare": unshare_argv(), "none": []}[level]
            self.proc = subprocess.Popen(prefix + [python, "-I", "-S", script, "serve", level], stdin=boot_server,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
                                         env={}, cwd="/")
            # The control socket travels over the boot socket, so that only the server holds its end of it (the
            # bwrap/unshare processes hold the boot socket as their stdin, and outlive nothing of value in it).
            socket.send_fds(boot_host, [b"c"], [server.fileno()])
        except BaseException:
            host.close()
            self.slot.release()
            raise
        finally:
            for sock in (boot_host, boot_server, server):
                sock.close()
        self.control = host
        self.control.settimeout(REPLY_TIMEOUT_S)
        self.last_words = ""  # the server's stderr, read when the sandbox is closed

    @property
    def uid(self) -> int | None:
        return self.slot.uid

    def run(self, job: dict[str, Any], tests: dict[str, Any], limits: Limits, workdir: str) -> dict[str, Any] | None:
        """The job's report (see `run`); None when the server was gone before the job started, so nothing ran."""
        header = dict(job, uid=self.uid, workdir=workdir, limits=limits)
        n_tests = max(1, len(tests.get("tests", tests.get("cases", ()))))
        deadline = time.monotonic() + 5.0 + limits["timeout_s"] * (n_tests + 1)
        report_r, report_w = os.pipe()
        output_r, output_w = os.pipe()
        given = [_memfd(header), _memfd(tests), report_w, output_w]
        try:
            socket.send_fds(self.control, [b"run"], given)
        except OSError:
            self.reusable = False
            for fd in (report_r, output_r):
                os.close(fd)
            return None
        finally:
            for fd in given:
                os.close(fd)
        try:
            report, complete = _collect(report_r, output_r, deadline, limits["max_output_bytes"])
        finally:
            for fd in (report_r, output_r):
                os.close(fd)
        self.reusable = complete and self.level != "none" and self._confirmed()
        return report

    def _confirmed(self) -> bool:
        """Whether the server says that every process of the job is gone and the scratch dirs are empty."""
        try:
            return self.control.recv(16) == b"done"
        except OSError:  # timed out, or the server is gone
            return False

    def alive(self) -> bool:
        return self.reusable and self.proc.poll() is None

    def close(self, graceful: bool) -> None:
        """Stop the server (gracefully: closing its socket, so that the namespaces are gone when it has exited;
        else, or when that takes too long, by SIGKILL to the process group) and release the uid slot."""
        import subprocess
        self.control.close()
        try:
            if not graceful:
                raise subprocess.TimeoutExpired(self.proc.args, 0)
            self.proc.wait(timeout=REPLY_TIMEOUT_S)
        except subprocess.TimeoutExpired:  # kill before reaping, so that the group id cannot be reused meanwhile
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        with contextlib.suppress(OSError, TypeError):
            os.set_blocking(self.proc.stderr.fileno(), False)
            self.last_words = (self.proc.stderr.read(4096) or b"").decode(errors="replace").strip()[-300:]
        self.proc.stderr.close()
        self.slot.release()

    def forget(self) -> None:
        """In a forked child: drop this process's handles on a sandbox it does not own, stopping nothing."""
        self.control.close()
        self.proc.stderr.close()
        self.slot.forget()


class _Pool:
    """This process's sandboxes: a caller takes an idle one of the right kind (or starts one) and gives it back."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.live: list[Sandbox] = []
        self.idle: list[tuple[tuple, Sandbox]] = []
        self.started = 0
        self.hooked = False
        self.spawner: Any = None  # the thread that starts every sandbox (see `_start`)

    def run(self, key: tuple[str, str, int], job: dict[str, Any], tests: dict[str, Any], limits: Limits,
            scratch_root: str | None) -> dict[str, Any]:
        """Run a job in an idle sandbox; once more in a new one if that sandbox's server was already gone."""
        import tempfile
        for _ in range(2):
            box = self._take(key)
            scratch = None if box.level == "bwrap" else tempfile.mkdtemp(prefix="rlvr-sbx-", dir=scratch_root)
            try:
                if scratch is not None and box.uid is not None:
                    os.chown(scratch, box.uid, box.uid)
                report = box.run(job, tests, limits, scratch or SANDBOX_DIR)
            finally:
                self._give(key, box)
                if scratch is not None:
                    remove_tree(scratch)
            if report is not None:
                if report.get("cause") == "harness killed" and box.last_words:
                    report["detail"] += "; sandbox: " + box.last_words
                return report
        return _error("harness killed", "the sandbox server is gone: " + box.last_words)

    def _take(self, key: tuple) -> Sandbox:
        with self.lock:
            if not self.hooked:
                import atexit
                atexit.register(shutdown)
                os.register_at_fork(after_in_child=self._forget_after_fork)
                self.hooked = True
            while (i := next((i for i, (k, _) in enumerate(self.idle) if k == key), None)) is not None:
                box = self.idle.pop(i)[1]
                if box.alive():
                    return box
                self._drop(box)
        box = self._start(key)
        with self.lock:
            self.started += 1
            self.live.append(box)
        return box

    def _start(self, key: tuple) -> Sandbox:
        """Start a sandbox from a thread that lives as long as this pool: bwrap's `--die-with-parent` ends a sandbox
        when the thread that started it exits, and a caller's thread (a batch's worker) may exit first."""
        with self.lock:
            if self.spawner is None:
                from concurrent.futures import ThreadPoolExecutor
                self.spawner = ThreadPoolExecutor(1, thread_name_prefix="rlvr-sandbox-start")
            spawner = self.spawner
        return spawner.submit(Sandbox, *key).result()

    def _give(self, key: tuple, box: Sandbox) -> None:
        with self.lock:
            if box not in self.live:  # shut down meanwhile
                return
            if box.alive():
                self.idle.append((key, box))
                return
            self._drop(box)

    def _drop(self, box: Sandbox) -> None:
        """Discard a sandbox (holding the lock): its job may still run, so kill it."""
        self.live.remove(box)
        box.close(graceful=False)

    def _forget_after_fork(self) -> None:
        """A forked child owns none of its parent's sandboxes: it drops them, and starts its own when needed."""
        for box in self.live:
            box.forget()
        self.lock, self.live, self.idle, self.started, self.spawner = threading.Lock(), [], [], 0, None


_POOL = _Pool()


def _memfd(obj: Any) -> int:
    """An in-memory file holding one frame: the sandbox reads it at its pace, the host never blocks on it."""
    fd = os.memfd_create("rlvr-job")
    send_frame(fd, obj)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _error(cause: str, detail: str) -> dict[str, Any]:
    return {"status": "error", "cause": cause, "detail": detail}


def _collect(report_r: int, output_r: int, deadline: float, cap: int) -> tuple[dict[str, Any], bool]:
    """Read the harness's report until it is complete, draining the job's output meanwhile up to `cap` bytes;
    (report, True), or (error, False) on a deadline, too much output, or no report."""
    import selectors
    sel = selectors.DefaultSelector()
    sel.register(report_r, selectors.EVENT_READ)
    sel.register(output_r, selectors.EVENT_READ)
    output, head, report = 0, b"", b""  # head: the first KiB of output, for error details
    while report_r in sel.get_map():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return _error("timeout", "wall-clock deadline of the sandbox"), False
        for key, _ in sel.select(remaining):
            chunk = os.read(key.fd, 65536)
            if not chunk:
                sel.unregister(key.fd)
            elif key.fd == output_r:
                output += len(chunk)
                head = (head + chunk)[:1024]
                if output > cap:
                    return _error("output limit", f"the program wrote more than {cap} bytes"), False
            else:
                report += chunk
                if len(report) > cap:
                    return _error("output limit", "harness report too large"), False
    if not report:
        return _error("harness killed", "the job ended without reporting; output: "
                      + head.decode(errors="replace")[-300:]), False
    return json.loads(report[FRAME.size:]), True


class _UidSlot:
    """An unprivileged uid that no other live sandbox on this host uses (root hosts only; None elsewhere), so that
    the per-uid process limit of one sandbox cannot be exhausted by another one's fork bomb. Held with a lock file;
    on release every process of that uid is killed and waited for."""

    def __init__(self) -> None:
        import fcntl
        import tempfile
        self.uid: int | None = None
        self.fd: int | None = None
        if os.geteuid() != 0:
            return
        lock_dir = os.path.join(tempfile.gettempdir(), "rlvr-sandbox-uids")
        os.makedirs(lock_dir, mode=0o700, exist_ok=True)
        for slot in range(UID_SLOTS):
            fd = os.open(os.path.join(lock_dir, str(slot)), os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            self.uid, self.fd = UID_BASE + slot, fd
            return
        raise RuntimeError(f"all {UID_SLOTS} sandbox uid slots are busy")

    def release(self) -> None:
        if self.fd is not None:
            try:
                _kill_uid(self.uid)
            finally:
                self.forget()

    def forget(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _kill_uid(uid: int) -> None:
    """SIGKILL every process whose real uid is `uid` until none is left (a dying one can take a few ms)."""
    for _ in range(500):
        pids = [pid for pid in os.listdir("/proc") if pid.isdigit() and _real_uid(pid) == uid]
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        time.sleep(0.01)
    raise RuntimeError(f"processes of sandbox uid {uid} survived 5 s of SIGKILL")


def _real_uid(pid: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("Uid:"))
    except (OSError, StopIteration):
        return None
