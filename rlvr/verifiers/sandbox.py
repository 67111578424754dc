"""Run untrusted Python against trusted tests in isolated, persistent sandboxes (see docs/sandbox.md).

The host side (`run`) keeps one persistent sandbox per concurrent caller: this same file started as a script
(`serve`) inside Linux namespaces (bubblewrap, else `unshare`) with a cleared environment. The server never reads
a job: it hands each job to its harness process (trusted; it runs the tests, one job after another) and, while
the job runs, forks a candidate process whenever the harness asks (the program is all a candidate reads; rlimits
applied), so no candidate process ever holds the tests, their expected values or the verdict pipe. Then it kills
every other process of the sandbox but the harness and wipes its scratch dirs before it takes the next job. The
host reads the verdict from a pipe only the harness holds, and discards the sandbox when a job runs out of time
or output, or ends without a report. Tests reach candidate functions through a plain-data RPC. This module
imports only the standard library at the top: it must run under `python -I -S` in a bare filesystem; modules
only the host needs are imported inside the host functions.
"""

from __future__ import annotations

import builtins
import contextlib
import functools
import gc
import json
import os
import resource
import select
import signal
import socket
import struct
import sys
import threading
import time
from typing import Any

LEVELS = ("bwrap", "unshare", "none")
SANDBOX_DIR = "/sandbox"  # the scratch dir as seen inside a bwrap sandbox
HARNESS_PATH = "/harness.py"  # where this file is mounted inside a bwrap sandbox
RPC_FD = 3  # where a candidate process finds its call pipe
UID_BASE = 61000  # root hosts run candidates as UID_BASE + slot, one uid per live sandbox
UID_SLOTS = 512
REPLY_TIMEOUT_S = 10.0  # how long the host waits for a server to confirm that a job's processes are gone
# Imported once per server, so that jobs fork with them loaded; each one also grows what every fork copies.
PRELOAD = ("typing", "math", "re", "collections", "itertools", "functools", "heapq", "bisect", "string", "ctypes",
           "shutil")
_FRAME = struct.Struct(">I")
# Compiled once by the server: the first compile in a process initialises the parser, ~3 ms that every fork would
# otherwise pay again (twice per job: the harness compiles the tests, the candidate its program).
WARM_UP = "def f(x: int = 1, *a, **k) -> list:\n    return [y for y in range(x) if y] + [lambda: f\"{x}\"]\n"


DEFAULT_LIMITS = {  # per verification; times in seconds, `timeout_s` bounds each test's wall time
    "timeout_s": 5.0, "cpu_s": 5, "memory_mb": 1024, "max_procs": 32, "max_file_mb": 16, "max_open_files": 64,
    "max_output_bytes": 1 << 20, "tmpfs_mb": 64,
}
Limits = dict[str, Any]


class IsolationError(RuntimeError):
    """No namespace isolation is available and unisolated runs were not allowed explicitly."""


# ---------------------------------------------------------------------------------------------------------------
# Host side: choose the isolation, keep the persistent sandboxes, pump each job's pipes under a deadline.
# ---------------------------------------------------------------------------------------------------------------

def _python() -> str:
    return os.path.realpath(sys.executable)


def _ro_bind(path: str) -> list[str]:
    """Bind `path` read-only, creating its missing parents world-traversable (the sandbox uid must reach it)."""
    parents = [p for p in _ancestors(path) if not p.startswith("/usr")]
    return [arg for p in parents for arg in ("--perms", "0755", "--dir", p)] + ["--ro-bind", path, path]


def _ancestors(path: str) -> list[str]:
    parts = path.strip("/").split("/")[:-1]
    return ["/" + "/".join(parts[:i + 1]) for i in range(len(parts))]


def _bwrap_argv(python: str, tmpfs_mb: int) -> list[str]:
    """bubblewrap: new pid/net/ipc/uts (and user, when not root) namespaces, a read-only view of only the system
    and the Python install, a fresh /proc and a read-only /dev, and size-capped tmpfs as /tmp and scratch dir."""
    argv = ["bwrap", "--die-with-parent", "--new-session", "--clearenv", "--hostname", "sandbox"]
    if os.geteuid() == 0:  # root drops to an unprivileged uid inside; a user namespace would map it back to 0
        argv += ["--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
    else:
        argv += ["--unshare-all"]
    for path in ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(path):
            argv += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            argv += ["--ro-bind", path, path]
    prefix = os.path.realpath(sys.base_prefix if python == _python() else os.path.dirname(os.path.dirname(python)))
    if not prefix.startswith("/usr/"):
        argv += _ro_bind(prefix)
    exe_dir = os.path.dirname(python)
    if not exe_dir.startswith(("/usr/", prefix + "/")):
        argv += _ro_bind(exe_dir)
    size = str(tmpfs_mb << 20)
    argv += ["--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--size", size, "--tmpfs", "/tmp",
             "--perms", "1777", "--size", size, "--tmpfs", SANDBOX_DIR,
             "--ro-bind", os.path.abspath(__file__), HARNESS_PATH,
             "--remount-ro", "/dev", "--remount-ro", "/", "--chdir", "/", "--"]
    return argv


def _unshare_argv() -> list[str]:
    """util-linux unshare: new pid/net/ipc/uts/mount namespaces; the host filesystem stays visible."""
    argv = ["unshare", "--fork", "--kill-child", "--pid", "--mount-proc", "--net", "--ipc", "--uts"]
    if os.geteuid() != 0:
        argv += ["--user", "--map-current-user"]
    return argv + ["--"]


@functools.lru_cache(maxsize=None)
def works(level: str, python: str | None = None) -> bool:
    """Whether a trivial test passes end to end at this isolation level (probed once per process)."""
    import shutil
    if level != "none" and shutil.which(level) is None:
        return False
    probe = run({"kind": "functions", "programs": ["import fractions\ndef f():\n    return fractions.Fraction(3, 2).__floor__()\n"]},
                {"tests": ["assert f() == 1"]}, DEFAULT_LIMITS, level, python=python)
    return probe.get("tests") == [{"ok": True}]


def isolation(python: str | None = None) -> str:
    """The strongest isolation that works here: "bwrap", "unshare" or "none"."""
    return next(level for level in LEVELS if works(level, python))


def resolve_isolation(requested: str | None, allow_unisolated: bool, python: str | None = None) -> str:
    """The level to run at: `requested` (checked to work) or the best available; refuses "none" unless allowed."""
    if requested is not None and requested not in LEVELS:
        raise ValueError(f"unknown isolation {requested!r}; expected one of {LEVELS}")
    level = requested or isolation(python)
    if not works(level, python):
        raise IsolationError(f"isolation {level!r} does not work on this machine with this interpreter "
                             f"(best available: {isolation(python)!r})")
    if level == "none" and not allow_unisolated:
        raise IsolationError("no Linux namespaces are available (neither bwrap nor unshare works), so untrusted "
                             "code would run with the host's filesystem and network; install bubblewrap or pass "
                             "allow_unisolated=True to accept that")
    return level


def run(job: dict[str, Any], tests: dict[str, Any], limits: Limits, level: str, scratch_root: str | None = None,
        python: str | None = None) -> dict[str, Any]:
    """Run one job and return the harness's report, or {"status": "error", "cause": ...} when it ran out of time
    or output, or ended without reporting. `job` (the candidate program and options) reaches the candidates; `tests`
    reaches only the trusted harness. `bwrap`/`unshare` jobs run in this process's persistent sandboxes; `none`
    runs each job in a sandbox of its own. Below bwrap, a host scratch dir under `scratch_root` is the working dir."""
    if level not in LEVELS:
        raise ValueError(f"unknown isolation {level!r}; expected one of {LEVELS}")
    return _POOL.run((level, python or _python(), limits["tmpfs_mb"]), job, tests, limits, scratch_root)


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
            script = HARNESS_PATH if level == "bwrap" else os.path.abspath(__file__)
            prefix = {"bwrap": _bwrap_argv(python, tmpfs_mb), "unshare": _unshare_argv(), "none": []}[level]
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
                    _remove_tree(scratch)
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
    _send(fd, obj)
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
    return json.loads(report[_FRAME.size:]), True


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


def _remove_tree(path: str) -> None:
    """rmtree that also removes what the candidate made unreadable (mode 000 directories and files)."""
    import shutil

    def retry(func, p, _exc):
        for q in (os.path.dirname(p), p):
            with contextlib.suppress(OSError):
                os.chmod(q, 0o700)
        func(p)
    shutil.rmtree(path, onerror=retry)
# ---------------------------------------------------------------------------------------------------------------
# Framing and plain-data encoding shared by both sides of every pipe.
# ---------------------------------------------------------------------------------------------------------------

def _frame(data: bytes) -> bytes:
    return _FRAME.pack(len(data)) + data


def _read_exact(fd: int, n: int, deadline: float | None) -> bytes:
    buf = b""
    while len(buf) < n:
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                raise TimeoutError
        chunk = os.read(fd, n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return buf


def _recv(fd: int, deadline: float | None = None, cap: int = 1 << 30) -> Any:
    (n,) = _FRAME.unpack(_read_exact(fd, _FRAME.size, deadline))
    if n > cap:
        raise OverflowError(f"message of {n} bytes exceeds the cap of {cap}")
    return json.loads(_read_exact(fd, n, deadline))


def _send(fd: int, obj: Any) -> None:
    data = _frame(json.dumps(obj).encode())
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def encode(value: Any) -> Any:
    """A JSON form of plain data that keeps tuples, sets, bytes, complex and non-string dict keys apart."""
    kind = type(value)
    if value is None or kind in (bool, int, float, str):
        return value
    if kind is list:
        return [encode(v) for v in value]
    if kind is tuple:
        return {"t": [encode(v) for v in value]}
    if kind in (set, frozenset):
        return {"s" if kind is set else "f": [encode(v) for v in value]}
    if kind is dict:
        return {"d": [[encode(k), encode(v)] for k, v in value.items()]}
    if kind is bytes:
        return {"b": value.hex()}
    if kind is complex:
        return {"c": [value.real, value.imag]}
    raise TypeError(f"a {kind.__name__} cannot cross the sandbox boundary (only plain data can)")


def decode(data: Any) -> Any:
    """Inverse of `encode`; builds only builtin containers and scalars."""
    if isinstance(data, list):
        return [decode(v) for v in data]
    if not isinstance(data, dict):
        return data
    (tag, body), = data.items()
    if tag == "t":
        return tuple(decode(v) for v in body)
    if tag in ("s", "f"):
        return (set if tag == "s" else frozenset)(decode(v) for v in body)
    if tag == "d":
        return {decode(k): decode(v) for k, v in body}
    if tag == "b":
        return bytes.fromhex(body)
    if tag == "c":
        return complex(*body)
    raise ValueError(f"unknown tag {tag!r}")


# ---------------------------------------------------------------------------------------------------------------
# Sandbox side: the harness (trusted, runs the tests) and, forked by the server on its request, candidate processes.
# ---------------------------------------------------------------------------------------------------------------

class CandidateError(Exception):
    """A test failed because of the candidate process: `cause` is what the verdict reports."""

    def __init__(self, cause: str, detail: str = "") -> None:
        super().__init__(f"{cause}: {detail}" if detail else cause)
        self.cause, self.detail = cause, detail


def _set_non_dumpable() -> None:
    """PR_SET_DUMPABLE=0: same-uid processes can then neither ptrace us nor open our /proc/PID/{mem,fd}. (A root
    host's uid drop already did this; an interpreter without ctypes on a non-root host cannot, see the docs.)"""
    libc = _libc()
    if libc is not None and libc.prctl(4, 0, 0, 0, 0) != 0:  # 4 = PR_SET_DUMPABLE
        import ctypes
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE, 0) failed")


@functools.lru_cache(maxsize=None)
def _libc() -> Any:
    """The C library through ctypes (loaded once per server, inherited by its forks), or None without ctypes."""
    try:
        import ctypes
    except ImportError:
        return None
    return ctypes.CDLL(None, use_errno=True)


def _drop_privileges(uid: int | None) -> None:
    if uid is not None and os.geteuid() == 0:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)


def _apply_limits(limits: dict[str, Any]) -> None:
    mb = 1 << 20
    for res, value in ((resource.RLIMIT_CPU, limits["cpu_s"]), (resource.RLIMIT_AS, limits["memory_mb"] * mb),
                       (resource.RLIMIT_NPROC, limits["max_procs"]), (resource.RLIMIT_FSIZE, limits["max_file_mb"] * mb),
                       (resource.RLIMIT_NOFILE, limits["max_open_files"]), (resource.RLIMIT_CORE, 0),
                       (resource.RLIMIT_MSGQUEUE, 0)):  # POSIX message queues would outlive the job: none
        # CPU: SIGXCPU at the soft limit (reported as a timeout), SIGKILL a second later if it is caught
        resource.setrlimit(res, (value, value + (res == resource.RLIMIT_CPU)))


def _compile_first(programs: list[str]) -> Any:
    """Compile the first variant of the program that parses (e.g. a HumanEval body with or without indentation)."""
    error: SyntaxError | None = None
    for source in programs:
        try:
            return compile(source, "<candidate>", "exec")
        except SyntaxError as exc:
            error = error or exc
    raise error if error else SyntaxError("empty program")


def _candidate(header: dict[str, Any], fds: list[int]) -> None:
    """Body of a candidate process (never returns): set up fds and limits, then run the program."""
    if header["kind"] == "io":
        stdin_fd, stdout_fd = fds
        os.dup2(stdin_fd, 0)
        os.dup2(stdout_fd, 1)
    else:
        (rpc_fd,) = fds
        os.dup2(rpc_fd, RPC_FD)
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    os.closerange(3 if header["kind"] == "io" else RPC_FD + 1, 1 << 16)
    os.chdir(header["workdir"])
    _apply_limits(header["limits"])
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    try:
        code = _compile_first(header["programs"])
    except SyntaxError as exc:
        _candidate_exit(header, {"error": "SyntaxError", "detail": f"{exc.msg} (line {exc.lineno})"})
    namespace = {"__name__": "__main__" if header["kind"] == "io" else "__candidate__", "__builtins__": builtins}
    try:
        exec(code, namespace)
    except BaseException as exc:  # the program's own failure, SystemExit included
        if header["kind"] == "io" and isinstance(exc, SystemExit) and exc.code in (None, 0):
            _candidate_exit(header, None)
        _candidate_exit(header, {"error": type(exc).__name__, "detail": str(exc)[:300]})
    if header["kind"] == "io":
        _candidate_exit(header, None)
    names = [k for k, v in namespace.items() if callable(v) and not k.startswith("__")]
    _send(RPC_FD, {"ready": names})
    _serve_calls(namespace)


def _candidate_exit(header: dict[str, Any], error: dict[str, str] | None) -> None:
    with contextlib.suppress(BaseException):
        sys.stdout.flush()
    if error is not None and header["kind"] != "io":
        with contextlib.suppress(BaseException):
            _send(RPC_FD, error)
    os._exit(0 if error is None else 1)


def _serve_calls(namespace: dict[str, Any]) -> None:
    """Answer the harness's calls `[name, args, kwargs]` with `{"value": ...}` or `{"error": type, ...}`."""
    while True:
        try:
            name, args, kwargs = _recv(RPC_FD)
        except EOFError:
            os._exit(0)
        try:
            reply = {"value": encode(namespace[name](*decode(args), **decode(kwargs)))}
        except BaseException as exc:  # reported to the harness, which owns the verdict
            reply = {"error": type(exc).__name__, "detail": str(exc)[:300]}
        _send(RPC_FD, reply)


class Spawner:
    """The harness's handle on its server: ask for a candidate process (its fds travel with the request), learn how
    it ended. The server forks it, so it shares no memory with the harness."""

    def __init__(self, control: socket.socket) -> None:
        self.control, self.child = control, None

    def spawn(self, fds: list[int]) -> int:
        try:
            socket.send_fds(self.control, [b"spawn"], fds)
        except OSError:
            raise CandidateError("killed", "the sandbox server is gone") from None
        self.child = self._read_int()
        return self.child

    def _read_int(self) -> int:
        try:
            return struct.unpack(">i", _read_exact(self.control.fileno(), 4, time.monotonic() + 30))[0]
        except (EOFError, OSError):
            raise CandidateError("killed", "the sandbox server is gone") from None

    def reap(self, kill: bool) -> str | None:
        """Wait for the current candidate (the server kills it first if asked); a cause when a signal ended it."""
        if kill:
            try:
                self.control.sendall(b"kill")
            except OSError:
                raise CandidateError("killed", "the sandbox server is gone") from None
        status = self._read_int()
        self.child = None
        if os.WIFSIGNALED(status) and not kill:
            sig = os.WTERMSIG(status)
            return "timeout" if sig == signal.SIGXCPU else f"crashed ({signal.Signals(sig).name})"
        return None


class Remote:
    """A candidate function as seen by trusted test code: each call is plain data over a pipe, with a deadline."""

    def __init__(self, conn: FunctionRunner, name: str) -> None:
        self.conn, self.__name__ = conn, name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.conn.call(self.__name__, args, kwargs)


class FunctionRunner:
    """Runs tests that call candidate functions, one candidate process until it fails, then a fresh one."""

    def __init__(self, spawner: Spawner, limits: dict[str, Any]) -> None:
        self.spawner, self.limits = spawner, limits
        self.fd: int | None = None
        self.names: list[str] = []
        self.deadline = 0.0
        self.broken: CandidateError | None = None  # the program itself failed: every later test fails alike

    def start(self) -> None:
        if self.broken is not None:
            raise self.broken
        mine, theirs = socket.socketpair()
        self.spawner.spawn([theirs.fileno()])
        theirs.close()
        self.fd = mine.detach()
        try:
            reply = _recv(self.fd, self.deadline, self.limits["max_output_bytes"])
        except TimeoutError:
            self.stop(kill=True)
            raise CandidateError("timeout", "while defining the program") from None
        except (EOFError, OSError):
            cause = self.stop(kill=False)
            raise CandidateError(cause or "exited", "the program ended before the tests ran") from None
        except (ValueError, OverflowError, RecursionError) as exc:
            self.stop(kill=True)
            raise CandidateError("protocol", f"malformed reply: {exc!r}") from None
        if not isinstance(reply, dict) or not isinstance(reply.get("ready", reply.get("error")), (list, str)):
            self.stop(kill=True)
            raise CandidateError("protocol", "unexpected reply while defining the program")
        if "ready" not in reply:
            self.stop(kill=False)
            error = str(reply.get("error"))
            self.broken = CandidateError("memory" if error == "MemoryError" else "exception: " + error,
                                         "while defining the program: " + str(reply.get("detail", "")))
            raise self.broken
        self.names = [n for n in reply["ready"] if isinstance(n, str)]

    def stop(self, kill: bool) -> str | None:
        if self.fd is None:
            return None
        os.close(self.fd)
        self.fd = None
        return self.spawner.reap(kill)

    def call(self, name: str, args: tuple, kwargs: dict) -> Any:
        if self.fd is None:
            raise CandidateError("crashed", "candidate process is gone")
        try:
            _send(self.fd, [name, encode(args), encode(kwargs)])
        except TypeError as exc:
            raise CandidateError("unsupported value", str(exc)) from None
        except OSError:
            raise self._died() from None
        try:
            reply = _recv(self.fd, self.deadline, self.limits["max_output_bytes"])
        except TimeoutError:
            self.stop(kill=True)
            raise CandidateError("timeout", f"no answer within {self.limits['timeout_s']} s") from None
        except OverflowError as exc:
            self.stop(kill=True)
            raise CandidateError("output limit", str(exc)) from None
        except (EOFError, OSError):
            raise self._died() from None
        except (ValueError, RecursionError) as exc:
            self.stop(kill=True)
            raise CandidateError("protocol", f"malformed reply: {exc!r}") from None
        if "error" in reply:
            cause = "memory" if reply["error"] == "MemoryError" else "exception: " + str(reply["error"])
            raise CandidateError(cause, str(reply.get("detail", "")))
        try:
            return decode(reply["value"])
        except Exception as exc:  # any shape the candidate chose to send
            raise CandidateError("protocol", f"malformed reply: {exc!r}") from None

    def _died(self) -> CandidateError:
        cause = self.stop(kill=False) or "crashed"
        return CandidateError(cause, "candidate process ended during a call")


def _run_function_tests(spawner: Spawner, header: dict[str, Any], tests: dict[str, Any]) -> list[dict]:
    """Run `setup` (trusted) in the harness, bind the candidate's functions as `Remote`s, then each test."""
    runner = FunctionRunner(spawner, header["limits"])
    namespace: dict[str, Any] = {"__name__": "__tests__", "__builtins__": builtins}
    exec(compile(tests.get("setup", ""), "<setup>", "exec"), namespace)
    trusted = set(namespace)
    results = []
    for i, test in enumerate(tests["tests"]):
        runner.deadline = time.monotonic() + header["limits"]["timeout_s"]
        try:
            if runner.fd is None:
                runner.start()
            remote = tests.get("remote")
            for name in ([remote] if remote else [n for n in runner.names if n not in trusted]):
                namespace[name] = Remote(runner, name)
            exec(compile(test, f"<test {i}>", "exec"), namespace)
            results.append({"ok": True})
        except CandidateError as exc:
            results.append({"ok": False, "cause": exc.cause, "detail": exc.detail})
        except AssertionError as exc:
            results.append({"ok": False, "cause": "wrong answer", "detail": str(exc)[:300]})
        except Exception as exc:  # test code tripping over what the candidate returned (or a missing name)
            results.append({"ok": False, "cause": f"exception: {type(exc).__name__}", "detail": str(exc)[:300]})
        if not results[-1]["ok"] and tests.get("stop_on_failure"):
            break
    runner.stop(kill=True)
    return results


def _run_io_tests(spawner: Spawner, header: dict[str, Any], tests: dict[str, Any]) -> list[dict]:
    """Run the program once per case with the case's stdin; compare stdout line by line, trailing space ignored."""
    limits = header["limits"]
    results = []
    for case in tests["cases"]:
        stdin = os.memfd_create("stdin")
        os.write(stdin, str(case.get("stdin", "")).encode())
        os.lseek(stdin, 0, os.SEEK_SET)
        out_r, out_w = os.pipe()
        spawner.spawn([stdin, out_w])
        os.close(stdin)
        os.close(out_w)
        out, cause = b"", None
        deadline = time.monotonic() + limits["timeout_s"]
        try:
            while chunk := _read_some(out_r, deadline):
                out += chunk
                if len(out) > limits["max_output_bytes"]:
                    cause = "output limit"
                    break
        except TimeoutError:
            cause = "timeout"
        os.close(out_r)
        signalled = spawner.reap(kill=cause is not None)
        cause = cause or signalled
        if cause is None and _normalise(out.decode(errors="replace")) != _normalise(str(case["stdout"])):
            cause = "wrong answer"
        results.append({"ok": cause is None} if cause is None else {"ok": False, "cause": cause,
                                                                    "detail": out[:200].decode(errors="replace")})
        if cause is not None and tests.get("stop_on_failure"):
            break
    return results


def _read_some(fd: int, deadline: float) -> bytes:
    remaining = deadline - time.monotonic()
    if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
        raise TimeoutError
    return os.read(fd, 65536)


def _normalise(text: str) -> list[str]:
    return [line.rstrip() for line in text.strip().splitlines()]


def harness_main(job_fd: int, tests_fd: int, report_fd: int, spawner: Spawner) -> None:
    """One job in the harness process: read the job, then the tests, run them, send the report."""
    header = _read_memfd(job_fd)
    os.close(job_fd)
    _drop_privileges(header["uid"])  # the first job's; a no-op afterwards
    os.chdir(header["workdir"])
    tests = _recv(tests_fd)
    os.close(tests_fd)
    try:
        run_tests = _run_io_tests if header["kind"] == "io" else _run_function_tests
        report = {"status": "ok", "tests": run_tests(spawner, header, tests)}
    except CandidateError as exc:
        report = {"status": "error", "cause": exc.cause, "detail": exc.detail}
    except Exception as exc:  # a broken test suite: reported, never counted as a pass
        report = {"status": "error", "cause": "harness", "detail": f"{type(exc).__name__}: {exc}"[:300]}
    _send(report_fd, report)


def _read_memfd(fd: int) -> Any:
    """The object framed in a memfd, read from offset 0 (processes forked with the fd share its offset)."""
    data = os.pread(fd, os.fstat(fd).st_size, 0)
    return json.loads(data[_FRAME.size:_FRAME.size + _FRAME.unpack_from(data)[0]])


# ---------------------------------------------------------------------------------------------------------------
# The persistent server: pristine (it never reads a job's tests or program), one job at a time, a sweep after each.
# ---------------------------------------------------------------------------------------------------------------

def server_main(level: str) -> None:
    """Serve jobs from the host: each "run" message brings (job, tests, report pipe, output pipe) fds; run the job
    in the harness (`_serve_job`; a new harness when the last one died), sweep, and answer "done" (or "dirty",
    then exit: the host discards this sandbox). Exits when the host closes the control socket."""
    boot = socket.socket(fileno=0)
    _, fds, _, _ = socket.recv_fds(boot, 1, 1)
    boot.detach()
    control = socket.socket(fileno=fds[0])
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)  # replaces the boot socket
    os.close(null)
    _set_non_dumpable()
    for name in PRELOAD:  # every job and candidate process forks with these already imported
        with contextlib.suppress(ImportError):
            __import__(name)
    compile(WARM_UP, "<warm-up>", "exec")
    gc.freeze()  # forks share these pages: no collection in a child touches (and so copies) them
    scratch = (SANDBOX_DIR, "/tmp") if level == "bwrap" else ()  # below bwrap, the host owns the scratch dir
    harness: Harness | None = None
    while True:
        try:
            request, fds, _, _ = socket.recv_fds(control, 16, 4)
        except OSError:
            return
        if request != b"run" or len(fds) != 4:
            return
        if harness is not None and not harness.alive():  # killed after its last job (by what the sweep then ended)
            harness.close()
            harness = None
        if harness is None:
            harness = Harness()
        if not _serve_job(harness, fds):
            harness = None
        clean = level == "none" or _sweep(scratch, spare=() if harness is None else (harness.pid,))
        control.sendall(b"done" if clean else b"dirty")
        if not clean:
            return


class Harness:
    """The server's handle on its persistent harness process, which runs the jobs' tests one job after another
    (a fresh namespace each), asking the server for candidate processes. It never forks: candidates come from
    the server, so none shares memory with it. A job whose candidates kill it scores 0 (no report), and the next
    job gets a new one."""

    def __init__(self) -> None:
        self.sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)  # one message per request
        self.pid = os.fork()
        if self.pid == 0:  # keep stdin/stdout/stderr and its socket: no job's fds, not the control socket
            keep = theirs.fileno()
            os.closerange(3, keep)
            os.closerange(keep + 1, 1 << 16)
            _harness_process(theirs)
        theirs.close()
        self.pidfd = os.pidfd_open(self.pid)

    def alive(self) -> bool:
        return not select.select([self.pidfd], [], [], 0)[0]

    def close(self) -> None:
        """After its death: reap it and release the handle."""
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)
        os.close(self.pidfd)
        self.sock.close()


def _serve_job(harness: Harness, fds: list[int]) -> bool:
    """Hand the job's fds to the harness; until it reports the job done, fork a candidate process whenever it asks
    (the request brings the candidate's fds; the answer is its pid, then its exit status). The server reads
    neither the job nor its tests: each child reads what it needs from the fds it inherits. False when the
    harness died (it is then closed)."""
    job_fd, tests_fd, report_fd, output_fd = fds
    child, child_fd = 0, -1
    try:
        socket.send_fds(harness.sock, [b"job"], fds)
        while True:
            ready = select.select([harness.pidfd, harness.sock] + [child_fd] * (child_fd >= 0), [], [])[0]
            if child_fd in ready:
                status = os.waitpid(child, 0)[1]
                os.close(child_fd)
                child, child_fd = 0, -1
                with contextlib.suppress(OSError):
                    harness.sock.sendall(struct.pack(">i", status))
            if harness.sock in ready:
                try:
                    request, given, _, _ = socket.recv_fds(harness.sock, 16, 4)
                except OSError:
                    request, given = b"", []
                if request == b"spawn" and not child:
                    child = os.fork()
                    if child == 0:
                        _candidate_process(job_fd, output_fd, given)
                    child_fd = os.pidfd_open(child)
                    harness.sock.sendall(struct.pack(">i", child))
                elif request == b"kill" and child:
                    os.kill(child, signal.SIGKILL)
                elif request == b"idle":  # the job is done
                    return True
                for fd in given:
                    os.close(fd)
                if not request:
                    raise OSError("the harness closed its socket")
            if harness.pidfd in ready:
                raise OSError("the harness died")
    except OSError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(harness.pid, signal.SIGKILL)
        harness.close()
        return False
    finally:
        for fd in (child_fd, job_fd, tests_fd, report_fd, output_fd):
            with contextlib.suppress(OSError):
                os.close(fd)


def _harness_process(sock: socket.socket) -> None:
    """Body of the persistent harness (never returns): for each "job" message (job, tests, report pipe, output
    pipe), the output pipe becomes stdout and stderr, the job runs, the pipes are let go, and "idle" follows."""
    try:
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, 0)
        _set_non_dumpable()
        spawner = Spawner(sock)
        while True:
            request, fds, _, _ = socket.recv_fds(sock, 16, 4)
            if request != b"job" or len(fds) != 4:
                return
            job_fd, tests_fd, report_fd, output_fd = fds
            os.dup2(output_fd, 1)
            os.dup2(output_fd, 2)
            os.close(output_fd)
            try:
                harness_main(job_fd, tests_fd, report_fd, spawner)
            except BaseException as exc:  # said on this job's output, which the host quotes
                os.write(2, f"sandbox harness failed: {type(exc).__name__}: {exc}\n".encode())
                raise
            finally:
                os.close(report_fd)
                os.dup2(null, 1)
                os.dup2(null, 2)
            sock.sendall(b"idle")
    finally:
        os._exit(0)


def _candidate_process(job_fd: int, output_fd: int, fds: list[int]) -> None:
    """Body of a candidate process forked by the server (never returns): read the job, become the sandbox uid,
    send stdout and stderr to the job's output pipe, run the program."""
    try:
        header = _read_memfd(job_fd)
        _drop_privileges(header["uid"])
        os.dup2(output_fd, 1)
        os.dup2(output_fd, 2)
        _candidate(header, fds)
    finally:
        os._exit(1)


def _sweep(scratch: tuple[str, ...], spare: tuple[int, ...] = ()) -> bool:
    """After a job: SIGKILL every process of this pid namespace but this one, its init and `spare` (the idle
    harness), reap them, wipe the scratch dirs; True only if the sandbox is then as the job found it (no process,
    no file, no System V IPC object left; POSIX message queues are prevented by RLIMIT_MSGQUEUE=0)."""
    me = os.getpid()
    if me > 2:  # pid 1 (unshare) or 2 (under bwrap's init) proves a pid namespace of our own: kill stays in it
        return False
    keep = {1, me, *spare}
    for _ in range(1000):
        others = [int(pid) for pid in os.listdir("/proc") if pid.isdigit() and int(pid) not in keep]
        for pid in others:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        if not others:
            break
        time.sleep(0.002)  # zombies of orphans wait for the namespace's init to reap them
    else:
        return False
    return all(_wipe(path) for path in scratch) and not _sysv_ipc_objects()


def _wipe(path: str) -> bool:
    """Empty a scratch dir and restore its mode and extended attributes; False if that fails."""
    try:
        for name in os.listdir(path):
            entry = os.path.join(path, name)
            if os.path.isdir(entry) and not os.path.islink(entry):
                _remove_tree(entry)
            else:
                os.unlink(entry)
        os.chmod(path, 0o1777)
        for attr in os.listxattr(path):
            if attr.startswith(("user.", "system.posix_acl")):
                os.removexattr(path, attr)
        return not os.listdir(path)
    except (OSError, RecursionError):
        return False


def _sysv_ipc_objects() -> bool:
    """Whether a System V shared memory segment, semaphore set or message queue exists in this IPC namespace."""
    for kind in ("shm", "sem", "msg"):
        with contextlib.suppress(OSError), open(f"/proc/sysvipc/{kind}") as f:
            if len(f.readlines()) > 1:  # a header line, then one line per object
                return True
    return False


if __name__ == "__main__":
    server_main(sys.argv[2])
