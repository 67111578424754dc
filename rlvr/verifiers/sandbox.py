"""Run untrusted Python against trusted tests in an isolated process tree (see docs/sandbox.md).

The host side (`run`) starts this same file as a script inside Linux namespaces (bubblewrap, else `unshare`)
with a cleared environment and a wall-clock deadline, and reads the verdict from a pipe only the trusted
harness holds. Inside, the harness forks a zygote that knows only the candidate program, and every candidate
process is forked from it with rlimits applied, so no candidate process ever holds the tests, their expected
values or the verdict pipe. Tests run in the harness and reach candidate functions through a plain-data RPC.
This module imports only the standard library: it must run under `python -I -S` in a bare filesystem, and it
starts once per verification, so modules only the host side needs are imported inside the host functions.
"""

from __future__ import annotations

import builtins
import contextlib
import functools
import json
import os
import resource
import select
import signal
import socket
import struct
import sys
import time
from typing import Any

LEVELS = ("bwrap", "unshare", "none")
SANDBOX_DIR = "/sandbox"  # the scratch dir as seen inside a bwrap sandbox
HARNESS_PATH = "/harness.py"  # where this file is mounted inside a bwrap sandbox
RPC_FD = 3  # where a candidate process finds its call pipe
UID_BASE = 61000  # root hosts run candidates as UID_BASE + slot, one uid per concurrent sandbox
UID_SLOTS = 512
_FRAME = struct.Struct(">I")


DEFAULT_LIMITS = {  # per verification; times in seconds, `timeout_s` bounds each test's wall time
    "timeout_s": 5.0, "cpu_s": 5, "memory_mb": 1024, "max_procs": 32, "max_file_mb": 16, "max_open_files": 64,
    "max_output_bytes": 1 << 20, "tmpfs_mb": 64,
}
Limits = dict[str, Any]


class IsolationError(RuntimeError):
    """No namespace isolation is available and unisolated runs were not allowed explicitly."""


# ---------------------------------------------------------------------------------------------------------------
# Host side: choose the isolation, build the command line, pump the pipes under a deadline.
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


def _bwrap_argv(python: str, limits: Limits) -> list[str]:
    """bubblewrap: new pid/net/ipc/uts (and user, when not root) namespaces, a read-only view of only the system
    and the Python install, a fresh /proc, /dev and /tmp, and a size-capped tmpfs as the scratch dir."""
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
    argv += ["--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--size", str(limits["tmpfs_mb"] << 20), "--tmpfs", "/tmp",
             "--perms", "1777", "--size", str(limits["tmpfs_mb"] << 20), "--tmpfs", SANDBOX_DIR,
             "--ro-bind", os.path.abspath(__file__), HARNESS_PATH, "--chdir", SANDBOX_DIR, "--"]
    return argv


def _unshare_argv() -> list[str]:
    """util-linux unshare: new pid/net/ipc/uts/mount namespaces; the host filesystem stays visible."""
    argv = ["unshare", "--fork", "--kill-child", "--pid", "--mount-proc", "--net", "--ipc", "--uts"]
    if os.geteuid() != 0:
        argv += ["--user", "--map-current-user"]
    return argv + ["--"]


def _prefix(level: str, python: str, limits: Limits) -> list[str]:
    if level == "bwrap":
        return _bwrap_argv(python, limits)
    return _unshare_argv() if level == "unshare" else []


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


@contextlib.contextmanager
def _uid_slot():
    """An unprivileged uid that no other concurrent sandbox on this host uses (root hosts only), so that the
    per-uid process limit of one sandbox cannot be exhausted by another one's fork bomb."""
    import fcntl
    import tempfile
    if os.geteuid() != 0:
        yield None
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
        try:
            yield UID_BASE + slot
        finally:
            _kill_uid(UID_BASE + slot)
            os.close(fd)
        return
    raise RuntimeError(f"all {UID_SLOTS} sandbox uid slots are busy")


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


def _kill_group(proc: Any) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def run(job: dict[str, Any], tests: dict[str, Any], limits: Limits, level: str, scratch_root: str | None = None,
        python: str | None = None) -> dict[str, Any]:
    """Run one job in a fresh sandbox and return the harness's report, or {"status": "error", "cause": ...} when
    the sandbox ran out of time or output, or died before reporting. `job` (the candidate program and options)
    reaches the zygote; `tests` reaches only the trusted harness."""
    import subprocess
    import tempfile
    scratch = None if level == "bwrap" else tempfile.mkdtemp(prefix="rlvr-sbx-", dir=scratch_root)
    result_r, result_w = os.pipe()
    with _uid_slot() as uid:
        try:
            if scratch is not None and uid is not None:
                os.chown(scratch, uid, uid)
            script = HARNESS_PATH if level == "bwrap" else os.path.abspath(__file__)
            python = python or _python()
            argv = _prefix(level, python, limits) + [python, "-I", "-S", script]
            header = dict(job, uid=uid, workdir=scratch or SANDBOX_DIR, limits=limits, result_fd=result_w)
            payload = _frame(json.dumps(header).encode()) + _frame(json.dumps(tests).encode())
            n_tests = max(1, len(tests.get("tests", tests.get("cases", ()))))
            deadline = time.monotonic() + 5.0 + limits["timeout_s"] * (n_tests + 1)
            proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    pass_fds=(result_w,), start_new_session=True, env={}, cwd=scratch)
            os.close(result_w)
            result_w = -1
            try:
                return _pump(proc, payload, result_r, deadline, limits["max_output_bytes"])
            finally:
                _kill_group(proc)
        finally:
            for fd in (result_r, result_w):
                if fd >= 0:
                    os.close(fd)
            if scratch is not None:
                _remove_tree(scratch)


def _pump(proc: Any, payload: bytes, result_r: int, deadline: float, cap: int) -> dict[str, Any]:
    """Feed the job, drain output up to `cap` bytes, collect the report; never buffers more than `cap`."""
    import selectors
    assert proc.stdin is not None and proc.stdout is not None
    sel = selectors.DefaultSelector()
    os.set_blocking(proc.stdin.fileno(), False)
    sel.register(proc.stdin, selectors.EVENT_WRITE)
    sel.register(proc.stdout, selectors.EVENT_READ)
    sel.register(result_r, selectors.EVENT_READ)
    output, head, report, sent = 0, b"", b"", 0  # head: the first KiB of output, for error details
    while len(sel.get_map()) > 0:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return {"status": "error", "cause": "timeout", "detail": "wall-clock deadline of the sandbox"}
        for key, _ in sel.select(remaining):
            if key.fileobj is proc.stdin:
                try:
                    sent += os.write(proc.stdin.fileno(), payload[sent:sent + 65536])
                except BrokenPipeError:
                    sent = len(payload)
                if sent >= len(payload):
                    sel.unregister(proc.stdin)
                    proc.stdin.close()
            elif key.fileobj is proc.stdout:
                chunk = os.read(proc.stdout.fileno(), 65536)
                output += len(chunk)
                head = (head + chunk)[:1024]
                if not chunk:
                    sel.unregister(proc.stdout)
                elif output > cap:
                    return {"status": "error", "cause": "output limit",
                            "detail": f"the program wrote more than {cap} bytes"}
            else:
                chunk = os.read(result_r, 65536)
                report += chunk
                if not chunk:
                    sel.unregister(result_r)
                elif len(report) > cap:
                    return {"status": "error", "cause": "output limit", "detail": "harness report too large"}
    if not report:
        return {"status": "error", "cause": "harness killed",
                "detail": f"the sandbox exited with status {proc.wait()} without reporting; output: "
                          + head.decode(errors="replace")[-300:]}
    return json.loads(report[_FRAME.size:])


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
# Sandbox side: harness (trusted, runs the tests) -> zygote (knows only the program) -> candidate processes.
# ---------------------------------------------------------------------------------------------------------------

class CandidateError(Exception):
    """A test failed because of the candidate process: `cause` is what the verdict reports."""

    def __init__(self, cause: str, detail: str = "") -> None:
        super().__init__(f"{cause}: {detail}" if detail else cause)
        self.cause, self.detail = cause, detail


def _set_non_dumpable() -> None:
    """PR_SET_DUMPABLE=0: same-uid processes can then neither ptrace us nor open our /proc/PID/{mem,fd}. (A root
    host's uid drop already did this; an interpreter without ctypes on a non-root host cannot, see the docs.)"""
    try:
        import ctypes
    except ImportError:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(4, 0, 0, 0, 0) != 0:  # 4 = PR_SET_DUMPABLE
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE, 0) failed")


def _drop_privileges(uid: int | None) -> None:
    if uid is not None and os.geteuid() == 0:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)


def _apply_limits(limits: dict[str, Any]) -> None:
    mb = 1 << 20
    for res, value in ((resource.RLIMIT_CPU, limits["cpu_s"]), (resource.RLIMIT_AS, limits["memory_mb"] * mb),
                       (resource.RLIMIT_NPROC, limits["max_procs"]), (resource.RLIMIT_FSIZE, limits["max_file_mb"] * mb),
                       (resource.RLIMIT_NOFILE, limits["max_open_files"]), (resource.RLIMIT_CORE, 0)):
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


def _zygote(header: dict[str, Any], control: socket.socket) -> None:
    """Fork one candidate process per request (fds arrive with it), report its pid, then its exit status."""
    while True:
        try:
            _, fds, _, _ = socket.recv_fds(control, 16, 4)
        except OSError:
            os._exit(0)
        if not fds:
            os._exit(0)
        pid = os.fork()
        if pid == 0:
            try:
                control.close()
                _candidate(header, fds)
            finally:
                os._exit(1)
        for fd in fds:
            os.close(fd)
        control.sendall(struct.pack(">i", pid))
        _, status = os.waitpid(pid, 0)
        control.sendall(struct.pack(">i", status))


class Zygote:
    """The harness's handle on the zygote process: spawn a candidate process, learn how it ended."""

    def __init__(self, header: dict[str, Any]) -> None:
        mine, theirs = socket.socketpair()
        pid = os.fork()
        if pid == 0:  # keep only stdout/stderr and the control socket: not stdin (tests), not the verdict pipe
            try:
                keep = theirs.fileno()
                os.closerange(3, keep)
                os.closerange(keep + 1, 1 << 16)
                os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
                _zygote(header, theirs)
            finally:
                os._exit(1)
        theirs.close()
        self.pid, self.control, self.child = pid, mine, None

    def spawn(self, fds: list[int]) -> int:
        try:
            socket.send_fds(self.control, [b"x"], fds)
        except OSError:
            raise CandidateError("killed", "the zygote process was killed") from None
        self.child = self._read_int()
        return self.child

    def _read_int(self) -> int:
        try:
            return struct.unpack(">i", _read_exact(self.control.fileno(), 4, time.monotonic() + 30))[0]
        except (EOFError, OSError):
            raise CandidateError("killed", "the zygote process was killed") from None

    def reap(self, kill: bool) -> str | None:
        """Wait for the current candidate (killing it first if asked); a cause when a signal ended it."""
        if kill:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.child, signal.SIGKILL)
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

    def __init__(self, zygote: Zygote, limits: dict[str, Any]) -> None:
        self.zygote, self.limits = zygote, limits
        self.fd: int | None = None
        self.names: list[str] = []
        self.deadline = 0.0
        self.broken: CandidateError | None = None  # the program itself failed: every later test fails alike

    def start(self) -> None:
        if self.broken is not None:
            raise self.broken
        mine, theirs = socket.socketpair()
        self.zygote.spawn([theirs.fileno()])
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
        return self.zygote.reap(kill)

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


def _run_function_tests(zygote: Zygote, header: dict[str, Any], tests: dict[str, Any]) -> list[dict]:
    """Run `setup` (trusted) in the harness, bind the candidate's functions as `Remote`s, then each test."""
    runner = FunctionRunner(zygote, header["limits"])
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


def _run_io_tests(zygote: Zygote, header: dict[str, Any], tests: dict[str, Any]) -> list[dict]:
    """Run the program once per case with the case's stdin; compare stdout line by line, trailing space ignored."""
    limits = header["limits"]
    results = []
    for case in tests["cases"]:
        stdin = os.memfd_create("stdin")
        os.write(stdin, str(case.get("stdin", "")).encode())
        os.lseek(stdin, 0, os.SEEK_SET)
        out_r, out_w = os.pipe()
        zygote.spawn([stdin, out_w])
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
        signalled = zygote.reap(kill=cause is not None)
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


def harness_main() -> None:
    """Entry point inside the sandbox: read the job, fork the zygote, then read and run the tests."""
    header = _recv(0)
    _set_non_dumpable()
    _drop_privileges(header["uid"])
    zygote = Zygote(header)
    tests = _recv(0)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    try:
        run_tests = _run_io_tests if header["kind"] == "io" else _run_function_tests
        report = {"status": "ok", "tests": run_tests(zygote, header, tests)}
    except CandidateError as exc:
        report = {"status": "error", "cause": exc.cause, "detail": exc.detail}
    except Exception as exc:  # a broken test suite: reported, never counted as a pass
        report = {"status": "error", "cause": "harness", "detail": f"{type(exc).__name__}: {exc}"[:300]}
    zygote.control.close()
    _send(header["result_fd"], report)


if __name__ == "__main__":
    harness_main()
