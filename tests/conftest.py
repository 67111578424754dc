"""Shared test fixtures: data paths, the kwargs that file-backed envs need, the process tree from /proc, a local
Ray cluster, and `rlvr train` under torchrun."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).parent / "data"

# File-backed envs take their data as `path`; every other built-in env needs no kwargs.
ENV_KWARGS = {
    "rlvr/GSM8K-v0": {"path": str(DATA / "gsm8k_sample.jsonl")},
    "rlvr/MATH-v0": {"path": str(DATA / "math_sample.jsonl")},
    "rlvr/HumanEval-v0": {"path": str(DATA / "humaneval_mini.jsonl")},
    "rlvr/CodeFeedback-v0": {"path": str(DATA / "humaneval_mini.jsonl")},
    "rlvr/ReasoningGym-v0": {"task": "basic_arithmetic"},  # registered where reasoning-gym is installed
}


@pytest.fixture
def data_dir() -> Path:
    return DATA


def live_parents() -> dict[int, int]:
    """pid -> parent pid of every live process (zombies left out), read from /proc."""
    parents = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            parents[int(pid)] = int(fields[1])
    return parents


def descendants(root: int) -> set[int]:
    """The live processes below `root` (children, their children, ...), not `root` itself."""
    parents, tree = live_parents(), {root}
    while children := {pid for pid, ppid in parents.items() if ppid in tree} - tree:
        tree |= children
    return tree - {root}


@pytest.fixture(scope="module")
def ray_cluster():
    """A local 2-CPU Ray cluster whose workers can import the test modules (and get the CPU build of vLLM's KV
    cache size, when the tests set one)."""
    ray = pytest.importorskip("ray")
    env = {"PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), str(ROOT), os.environ.get("PYTHONPATH", "")])}
    if "VLLM_CPU_KVCACHE_SPACE" in os.environ:
        env["VLLM_CPU_KVCACHE_SPACE"] = os.environ["VLLM_CPU_KVCACHE_SPACE"]
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": env})
    yield
    ray.shutdown()


def kill_tree(root: int) -> None:
    """SIGKILL `root` and every descendant: torchrun starts each rank in a session of its own, so killing
    torchrun's process group alone would leave the ranks running."""
    for pid in {root} | descendants(root):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun_train(args: list[str], cwd: Path) -> str:
    """`rlvr train ARGS` on two gloo ranks; its stdout (the test fails with the ranks' output if it fails)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={free_port()}",
           "-m", "rlvr.cli", "train", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        kill_tree(proc.pid)
        stdout, stderr = proc.communicate()
        pytest.fail(f"torchrun did not finish within 240 s; its output:\n{stdout[-2000:]}\n{stderr[-4000:]}")
    finally:
        kill_tree(proc.pid)
    assert proc.returncode == 0, stderr[-3000:]
    return stdout


@pytest.fixture(autouse=True, scope="module")
def _helper_workers_end_with_their_module():
    """The idle helper workers that `call_with_deadline` keeps (tool calls, math-verify's deadline) are stopped
    after each test module, so a later module that counts this process's children sees only its own."""
    yield
    from rlvr.verifiers.worker import stop_helpers

    stop_helpers()
