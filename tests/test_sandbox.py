"""Hostile programs: each scores 0, harms neither the host nor the next verification (in the same persistent
sandbox, when the job left it reusable), and leaves nothing behind. Every hostile program returns the right answer
only if its attack worked, so a leak would also show as a pass."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from multiprocessing import resource_tracker
from pathlib import Path

import pytest

from rlvr.types import Problem
from rlvr.verifiers import sandbox
from rlvr.verifiers.code import CodeVerifier, Limits

from conftest import descendants, live_parents

PROMPT = "def add(a, b):\n    \"\"\"Return a + b.\"\"\"\n"
TEST = "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n"
PROBLEM = Problem(id="hostile/add", prompt=PROMPT,
                  tests={"kind": "humaneval", "prompt": PROMPT, "test": TEST, "entry_point": "add"})
GOOD = "    return a + b\n"
SYSTEM_PYTHON = "/usr/bin/python3"
FAKE_REPORT = '{"status": "ok", "tests": [{"ok": true}]}'


def program(body: str) -> str:
    return "```python\n" + body + "\n```"


HOSTILE = {
    "infinite loop": ("def add(a, b):\n    while True:\n        pass\n", "timeout"),
    "busy loop at import": ("while True:\n    pass\n", "timeout"),
    "fork bomb": ("import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n", "timeout"),
    "memory bomb": ("def add(a, b):\n    x = bytearray(1 << 34)\n    return a + b\n", "memory"),
    "growing memory": ("def add(a, b):\n    xs = []\n    while True:\n        xs.append(bytearray(64 << 20))\n", "memory"),
    "100 MB of output": ("import sys\nsys.stdout.write('x' * (100 << 20))\n"
                         "def add(a, b):\n    return a + b\n", "output limit"),
    "os._exit(0) before the tests": ("import os\nos._exit(0)\ndef add(a, b):\n    return a + b\n", "exited"),
    "sys.exit(0)": ("import sys\nsys.exit(0)\ndef add(a, b):\n    return a + b\n", "exception: SystemExit"),
    "redefine check and assert": ("import builtins\nbuiltins.AssertionError = type('E', (BaseException,), {})\n"
                                  "def check(candidate):\n    return True\n"
                                  "def add(a, b):\n    return 0\n", "wrong answer"),
    "fake success output": ("import os\nfor fd in range(3, 64):\n    try:\n"
                            f"        os.write(fd, len({FAKE_REPORT!r}).to_bytes(4, 'big') + {FAKE_REPORT!r}.encode())\n"
                            "    except OSError:\n        pass\n"
                            f"print({FAKE_REPORT!r})\nprint('passed')\ndef add(a, b):\n    return 0\n", None),
    "write into other processes' fds": (
        "import os\nfor pid in os.listdir('/proc'):\n    try:\n        fds = os.listdir(f'/proc/{pid}/fd')\n"
        "    except OSError:\n        continue\n    for fd in fds:\n        try:\n"
        "            with open(f'/proc/{pid}/fd/{fd}', 'w') as f:\n"
        f"                f.write({FAKE_REPORT!r})\n        except OSError:\n            pass\n"
        "def add(a, b):\n    return 0\n", None),
    "kill the parent": ("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n"
                        "def add(a, b):\n    return a + b\n", None),
    "kill every process it can": ("import os, signal\nos.kill(-1, signal.SIGKILL)\n"
                                  "def add(a, b):\n    return a + b\n", None),
}


@pytest.fixture(scope="module")
def verifier() -> CodeVerifier:
    return CodeVerifier(limits=Limits(timeout_s=2, cpu_s=2, memory_mb=512, max_procs=16))


def sandbox_processes() -> list[int]:
    """Pids of live processes that belong to a sandbox started by this test process: our descendants, and
    (on a root host) anything running as a sandbox uid."""
    ours = descendants(os.getpid())
    if os.geteuid() == 0:
        in_range = range(sandbox.UID_BASE, sandbox.UID_BASE + sandbox.UID_SLOTS)
        ours |= {pid for pid in live_parents() if _uid(pid) in in_range}
    ours.discard(resource_tracker._resource_tracker._pid)  # multiprocessing's own helper, started by earlier tests
    return sorted(ours)


def _uid(pid: int) -> int | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("Uid:")))


def assert_no_sandbox_processes() -> None:
    """After `sandbox.shutdown()` (which stops the idle persistent sandboxes) nothing may remain. Killed processes
    can take a few ms to exit, so look again for up to 2 s before calling one a leftover."""
    sandbox.shutdown()
    deadline = time.monotonic() + 2
    while (left := sandbox_processes()) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert left == [], {pid: Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")[:200] for pid in left}


# Run as the next job: every process of the sandbox that is neither this candidate, nor one of its ancestors
# (server, init), nor the harness (whose pid the test passes), the scratch dir, /tmp and System V IPC objects, and
# a module's behaviour.
PROBE = """import json, os, string
def leftovers(harness):
    ancestors, pid = {harness}, os.getpid()
    while pid > 0:
        ancestors.add(pid)
        with open(f'/proc/{pid}/stat') as f:
            pid = int(f.read().rsplit(')', 1)[1].split()[1])
    others = [int(p) for p in os.listdir('/proc') if p.isdigit() and int(p) not in ancestors]
    ipc = [line for kind in ('shm', 'sem', 'msg') for line in open(f'/proc/sysvipc/{kind}').readlines()[1:]]
    return others, os.listdir('.'), os.listdir('/tmp'), ipc, json.dumps([1]) + string.capwords('a b')
"""
PROBE_PROBLEM = Problem(id="probe/leftovers", prompt="", tests={
    "kind": "asserts", "setup": "import os",
    "asserts": ["assert leftovers(os.getpid()) == ([], [], [], [], '[1]A B')"]})


def assert_next_job_finds_a_clean_sandbox(verifier: CodeVerifier) -> None:
    """At bwrap level (the only one with a private /tmp): the next job sees nothing of the previous one."""
    if verifier(PROBLEM, GOOD).isolation == "bwrap":
        verdict = verifier(PROBE_PROBLEM, PROBE)
        assert verdict.correct, verdict.error


def assert_clean_after(verifier: CodeVerifier, verdict) -> None:
    assert (verdict.reward, verdict.correct) == (0.0, False), verdict
    assert_next_job_finds_a_clean_sandbox(verifier)
    assert verifier(PROBLEM, GOOD).correct, "the next verification was harmed"
    assert_no_sandbox_processes()


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_program_scores_zero(verifier, name):
    body, cause = HOSTILE[name]
    verdict = verifier(PROBLEM, program(body))
    if cause is not None:
        assert cause in verdict.error, verdict.error
    assert_clean_after(verifier, verdict)


def test_cannot_write_outside_the_scratch_dir(verifier, tmp_path):
    target = tmp_path / "escaped.txt"
    os.chmod(tmp_path, 0o777)  # even a world-writable host dir must be out of reach
    body = f"def add(a, b):\n    open({str(target)!r}, 'w').write('x')\n    return a + b\n"
    verdict = verifier(PROBLEM, program(body))
    assert not target.exists()
    assert_clean_after(verifier, verdict)


def test_cannot_read_a_host_file(verifier, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("42")
    os.chmod(tmp_path, 0o755)
    os.chmod(secret, 0o644)  # world-readable on the host: only the mount namespace hides it
    body = f"def add(a, b):\n    return int(open({str(secret)!r}).read()) - 42 + a + b\n"
    verdict = verifier(PROBLEM, program(body))
    assert "FileNotFoundError" in verdict.error, verdict.error
    assert_clean_after(verifier, verdict)


def test_cannot_reach_a_loopback_listener(verifier):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.setblocking(False)
        port = server.getsockname()[1]
        body = (f"import socket\ndef add(a, b):\n    socket.create_connection(('127.0.0.1', {port}), timeout=1)\n"
                "    return a + b\n")
        verdict = verifier(PROBLEM, program(body))
        with pytest.raises(BlockingIOError):
            server.accept()
    assert verdict.error.startswith("test 0: exception: "), verdict.error
    assert_clean_after(verifier, verdict)


@pytest.fixture
def scratch_root():
    """A scratch root the sandbox uid can traverse (pytest's tmp_path lies under a 0700 directory)."""
    root = tempfile.mkdtemp(prefix="rlvr-test-scratch-")
    os.chmod(root, 0o755)
    yield Path(root)
    os.rmdir(root)  # fails the test run if anything was left inside


def test_scratch_dirs_are_removed(scratch_root):
    """Levels below bwrap use a host scratch dir: it is the working dir, and it is gone afterwards."""
    if not Path(SYSTEM_PYTHON).exists() or not sandbox.works("unshare", SYSTEM_PYTHON):
        pytest.skip("unshare cannot run an interpreter here")
    verifier = CodeVerifier(isolation="unshare", python=SYSTEM_PYTHON, scratch_root=str(scratch_root),
                            limits=Limits(timeout_s=2))
    body = ("import os\nos.makedirs('d/e')\nopen('d/e/f', 'w').write('x')\nos.chmod('d', 0)\n"
            "def add(a, b):\n    return a + b\n")
    verdict = verifier(PROBLEM, program(body))
    assert verdict.correct and verdict.isolation == "unshare"
    assert list(scratch_root.iterdir()) == []


def test_unshare_level_has_no_network(tmp_path):
    if not Path(SYSTEM_PYTHON).exists() or not sandbox.works("unshare", SYSTEM_PYTHON):
        pytest.skip("unshare cannot run an interpreter here")
    verifier = CodeVerifier(isolation="unshare", python=SYSTEM_PYTHON, limits=Limits(timeout_s=2))
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        body = (f"import socket\ndef add(a, b):\n    socket.create_connection(('127.0.0.1', "
                f"{server.getsockname()[1]}), timeout=1)\n    return a + b\n")
        assert_clean_after(verifier, verifier(PROBLEM, program(body)))


LINGERING = """import os, string, time
pid = os.fork()
if pid == 0:  # a daemon in a session of its own, that would outlive the job if nothing swept it
    os.setsid()
    if os.fork() == 0:
        time.sleep(60)
    os._exit(0)
os.waitpid(pid, 0)
os.makedirs('d/e')
open('d/e/f', 'w').write('x')
os.chmod('d', 0)
open('/tmp/json.py', 'w').write('def dumps(x):\\n    return \"forged\"\\n')
open('json.py', 'w').write('def dumps(x):\\n    return \"forged\"\\n')
string.capwords = lambda s: 'forged'
def add(a, b):
    return a + b
"""


def test_a_passing_job_leaves_nothing_for_the_next_job_in_the_same_sandbox(verifier):
    """A job that passes keeps its persistent sandbox: its background process, files in the scratch dir and /tmp,
    and a patched module must all be gone before the next job of that same sandbox starts."""
    if verifier(PROBLEM, GOOD).isolation != "bwrap":
        pytest.skip("only bwrap gives the sandbox a private /tmp")
    sandbox.shutdown()
    assert verifier(PROBE_PROBLEM, PROBE).correct
    started = sandbox.stats()["started"]
    verdict = verifier(PROBLEM, program(LINGERING))
    assert verdict.correct, verdict.error
    assert_next_job_finds_a_clean_sandbox(verifier)
    assert sandbox.stats() == {"started": started, "live": 1, "idle": 1}, "not the same sandbox"
    assert_no_sandbox_processes()


SYSV_SHM = """import ctypes
libc = ctypes.CDLL(None)
assert libc.shmget(0, 4096, 0o1600) >= 0  # IPC_PRIVATE, IPC_CREAT | 0600: outlives every process
def add(a, b):
    return a + b
"""


def test_a_job_that_leaves_what_cannot_be_swept_gets_its_sandbox_replaced(verifier):
    """A System V segment outlives its processes: the server reports the sandbox dirty, the host replaces it."""
    if verifier(PROBLEM, GOOD).isolation != "bwrap":
        pytest.skip("the probe needs bwrap's private /tmp")
    started = sandbox.stats()["started"]
    assert verifier(PROBLEM, program(SYSV_SHM)).correct
    assert_next_job_finds_a_clean_sandbox(verifier)
    assert sandbox.stats()["started"] == started + 1
    assert_no_sandbox_processes()


def test_parallel_callers_get_sandboxes_of_their_own(verifier):
    """Two workers, two sandboxes; a second batch reuses them although the threads that started them are gone."""
    sandbox.shutdown()
    started = sandbox.stats()["started"]
    items = [(PROBLEM, GOOD), (PROBLEM, "    return a - b\n")] * 4
    seen = []
    for _ in range(2):
        verdicts = verifier.batch(items, workers=2)
        assert [v.correct for v in verdicts] == [True, False] * 4, [v.error for v in verdicts]
        seen.append(sandbox.stats())
    assert seen[0] == seen[1] and seen[0]["started"] - started == seen[0]["live"] <= 2, seen
    assert_no_sandbox_processes()


def test_a_forked_child_starts_its_own_sandbox(verifier):
    assert verifier(PROBLEM, GOOD).correct
    parent = sandbox.stats()
    pid = os.fork()
    if pid == 0:  # the child must neither use nor stop the parent's sandbox
        ok = sandbox.stats()["live"] == 0 and verifier(PROBLEM, GOOD).correct and sandbox.stats()["started"] == 1
        os._exit(0 if ok else 1)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    assert verifier(PROBLEM, GOOD).correct
    assert sandbox.stats() == parent
    assert_no_sandbox_processes()


@pytest.mark.parametrize("exit_call", ["sys.exit(0)", "os._exit(0)"])
def test_sandboxes_end_with_the_host_process(exit_call):
    """At exit (atexit shutdown) or on a hard exit (bwrap --die-with-parent), no sandbox process survives."""
    code = ("import os, sys\nsys.path.insert(0, 'tests')  # for conftest\nfrom tests.test_sandbox import PROBLEM, GOOD, CodeVerifier, sandbox_processes\n"
            "assert CodeVerifier()(PROBLEM, GOOD).correct\nprint(sandbox_processes(), flush=True)\n" + exit_call)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).parent.parent).stdout
    pids = [int(p) for p in out.strip().strip("[]").split(",")]
    assert pids, "the sandbox was not seen"
    deadline = time.monotonic() + 2
    while (alive := [p for p in pids if _alive(p)]) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert alive == []


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_plain_data_codec_round_trips_and_refuses_objects():
    value = [1, 2.5, "s", None, True, (1, (2,)), {3, 4}, frozenset({5}), {"k": [1], (1, 2): b"\x00"}, 1 + 2j]
    assert sandbox.decode(sandbox.encode(value)) == value
    assert type(sandbox.decode(sandbox.encode((1,)))) is tuple
    with pytest.raises(TypeError, match="cannot cross the sandbox boundary"):
        sandbox.encode(object())
