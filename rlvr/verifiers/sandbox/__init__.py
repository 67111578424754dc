"""Run untrusted Python against trusted tests in isolated, persistent sandboxes (see docs/sandbox.md).

The host side (`host.run`) keeps one persistent sandbox per concurrent caller: the file `inside.py` started as a
script inside Linux namespaces (bubblewrap, else `unshare`; `isolation.py` builds their command lines) with a
cleared environment. The server never reads a job: it hands each job to its harness process (trusted; it runs the
tests, one job after another) and, while the job runs, forks a candidate process whenever the harness asks (the
program is all a candidate reads; rlimits applied), so no candidate process ever holds the tests, their expected
values or the verdict pipe. Then it kills every other process of the sandbox but the harness and wipes its scratch
dirs before it takes the next job. The host reads the verdict from a pipe only the harness holds, and discards the
sandbox when a job runs out of time or output, or ends without a report. Tests reach candidate functions through a
plain-data RPC (`encode`/`decode`). Which isolation to use is decided here, from what works on this
machine.
"""

from __future__ import annotations

import functools

from rlvr.verifiers.sandbox.host import DEFAULT_LIMITS, UID_BASE, UID_SLOTS, Limits, Sandbox, run, shutdown, stats
from rlvr.verifiers.sandbox.inside import decode, encode
from rlvr.verifiers.sandbox.isolation import LEVELS, IsolationError

__all__ = ["DEFAULT_LIMITS", "LEVELS", "UID_BASE", "UID_SLOTS", "IsolationError", "Limits", "Sandbox", "decode",
           "encode", "isolation", "resolve_isolation", "run", "shutdown", "stats", "works"]


@functools.lru_cache(maxsize=None)
def works(level: str, python: str | None = None) -> bool:
    """Whether a trivial test passes end to end at this isolation level (probed once per process)."""
    import shutil
    if level != "none" and shutil.which(level) is None:
        return False
    program = "import fractions\ndef f():\n    return fractions.Fraction(3, 2).__floor__()\n"
    probe = run({"kind": "functions", "programs": [program]}, {"tests": ["assert f() == 1"]}, DEFAULT_LIMITS, level,
                python=python)
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
