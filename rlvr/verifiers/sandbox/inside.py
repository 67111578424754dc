"""What runs inside a sandbox: the persistent server, the trusted harness that runs a job's tests, the candidate
processes that run the untrusted program, and the wire format all of them and the host speak.

This is one self-contained file on purpose. The host starts it as a script, `python -I -S inside.py serve LEVEL`,
with a cleared environment; under bubblewrap it is the only file of rlvr the sandbox can see (bind-mounted alone at
/harness.py), and `-I` keeps the script's own directory off `sys.path`, so it cannot import a sibling module. It
imports only the standard library. The host imports its wire format (`send_frame`, `recv_frame`, `encode`,
`decode`) and `remove_tree` from here, so that both sides share one definition.
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
import time
from typing import Any

SANDBOX_DIR = "/sandbox"  # the scratch dir as seen inside a bwrap sandbox
RPC_FD = 3  # where a candidate process finds its call pipe
# Imported once per server, so that jobs fork with them loaded; each one also grows what every fork copies.
PRELOAD = ("typing", "math", "re", "collections", "itertools", "functools", "heapq", "bisect", "string", "ctypes",
           "shutil")
FRAME = struct.Struct(">I")  # a frame: its length, then that many bytes of JSON
# Compiled once by the server: the first compile in a process initialises the parser, ~3 ms that every fork would
# otherwise pay again (twice per job: the harness compiles the tests, the candidate its program).
WARM_UP = "def f(x: int = 1, *a, **k) -> list:\n    return [y for y in range(x) if y] + [lambda: f\"{x}\"]\n"


# ---------------------------------------------------------------------------------------------------------------
# Framing and plain-data encoding shared by both sides of every pipe.
# ---------------------------------------------------------------------------------------------------------------

def _frame(data: bytes) -> bytes:
    return FRAME.pack(len(data)) + data


def read_exact(fd: int, n: int, deadline: float | None) -> bytes:
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


def recv_frame(fd: int, deadline: float | None = None, cap: int = 1 << 30) -> Any:
    (n,) = FRAME.unpack(read_exact(fd, FRAME.size, deadline))
    if n > cap:
        raise OverflowError(f"message of {n} bytes exceeds the cap of {cap}")
    return json.loads(read_exact(fd, n, deadline))


def send_frame(fd: int, obj: Any) -> None:
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


def remove_tree(path: str) -> None:
    """rmtree that also removes what the candidate made unreadable (mode 000 directories and files)."""
    import shutil

    def retry(func, p, _exc):
        for q in (os.path.dirname(p), p):
            with contextlib.suppress(OSError):
                os.chmod(q, 0o700)
        func(p)
    shutil.rmtree(path, onerror=retry)


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
    send_frame(RPC_FD, {"ready": names})
    _serve_calls(namespace)


def _candidate_exit(header: dict[str, Any], error: dict[str, str] | None) -> None:
    if error is not None and header.get("capture"):  # a run whose output is the result: the error ends it
        with contextlib.suppress(BaseException):
            sys.stdout.write(f"{error['error']}: {error['detail']}\n")
    with contextlib.suppress(BaseException):
        sys.stdout.flush()
    if error is not None and header["kind"] != "io":
        with contextlib.suppress(BaseException):
            send_frame(RPC_FD, error)
    os._exit(0 if error is None else 1)


def _serve_calls(namespace: dict[str, Any]) -> None:
    """Answer the harness's calls `[name, args, kwargs]` with `{"value": ...}` or `{"error": type, ...}`."""
    while True:
        try:
            name, args, kwargs = recv_frame(RPC_FD)
        except EOFError:
            os._exit(0)
        try:
            reply = {"value": encode(namespace[name](*decode(args), **decode(kwargs)))}
        except BaseException as exc:  # reported to the harness, which owns the verdict
            reply = {"error": type(exc).__name__, "detail": str(exc)[:300]}
        send_frame(RPC_FD, reply)


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
            return struct.unpack(">i", read_exact(self.control.fileno(), 4, time.monotonic() + 30))[0]
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
            reply = recv_frame(self.fd, self.deadline, self.limits["max_output_bytes"])
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
            send_frame(self.fd, [name, encode(args), encode(kwargs)])
        except TypeError as exc:
            raise CandidateError("unsupported value", str(exc)) from None
        except OSError:
            raise self._died() from None
        try:
            reply = recv_frame(self.fd, self.deadline, self.limits["max_output_bytes"])
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
    """Run the program once per case with the case's stdin; compare stdout line by line, trailing space ignored
    (or, with `capture`, report what it printed)."""
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
        if tests.get("capture"):  # a run, not a test: what it printed is the result (the python tool)
            text = out[:limits["max_output_bytes"]].decode(errors="replace")
            results.append({"ok": cause is None, "stdout": text, **({"cause": cause} if cause else {})})
            continue
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
    tests = recv_frame(tests_fd)
    os.close(tests_fd)
    try:
        run_tests = _run_io_tests if header["kind"] == "io" else _run_function_tests
        report = {"status": "ok", "tests": run_tests(spawner, header, tests)}
    except CandidateError as exc:
        report = {"status": "error", "cause": exc.cause, "detail": exc.detail}
    except Exception as exc:  # a broken test suite: reported, never counted as a pass
        report = {"status": "error", "cause": "harness", "detail": f"{type(exc).__name__}: {exc}"[:300]}
    send_frame(report_fd, report)


def _read_memfd(fd: int) -> Any:
    """The object framed in a memfd, read from offset 0 (processes forked with the fd share its offset)."""
    data = os.pread(fd, os.fstat(fd).st_size, 0)
    return json.loads(data[FRAME.size:FRAME.size + FRAME.unpack_from(data)[0]])


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
                remove_tree(entry)
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
