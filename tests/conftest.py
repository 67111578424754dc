"""Shared test fixtures: data paths, the kwargs that file-backed envs need, and the process tree from /proc."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"

# File-backed envs take their data as `path`; every other built-in env needs no kwargs.
ENV_KWARGS = {
    "rlvr/GSM8K-v0": {"path": str(DATA / "gsm8k_sample.jsonl")},
    "rlvr/MATH-v0": {"path": str(DATA / "math_sample.jsonl")},
    "rlvr/HumanEval-v0": {"path": str(DATA / "humaneval_mini.jsonl")},
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
