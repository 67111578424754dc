"""Isolation levels and the command lines that build them: bubblewrap (namespaces and a bare read-only
filesystem), util-linux `unshare` (namespaces over the host's filesystem), or none."""

from __future__ import annotations

import os
import sys

from rlvr.verifiers.sandbox.inside import SANDBOX_DIR

LEVELS = ("bwrap", "unshare", "none")
HARNESS_PATH = "/harness.py"  # where the inside file is mounted in a bwrap sandbox
INSIDE_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "inside.py")  # the file a sandbox runs


class IsolationError(RuntimeError):
    """No namespace isolation is available and unisolated runs were not allowed explicitly."""


def host_python() -> str:
    """This interpreter, resolved: the default one inside a sandbox."""
    return os.path.realpath(sys.executable)


def _ro_bind(path: str) -> list[str]:
    """Bind `path` read-only, creating its missing parents world-traversable (the sandbox uid must reach it)."""
    parents = [p for p in _ancestors(path) if not p.startswith("/usr")]
    return [arg for p in parents for arg in ("--perms", "0755", "--dir", p)] + ["--ro-bind", path, path]


def _ancestors(path: str) -> list[str]:
    parts = path.strip("/").split("/")[:-1]
    return ["/" + "/".join(parts[:i + 1]) for i in range(len(parts))]


def bwrap_argv(python: str, tmpfs_mb: int) -> list[str]:
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
    prefix = os.path.realpath(sys.base_prefix if python == host_python() else os.path.dirname(os.path.dirname(python)))
    if not prefix.startswith("/usr/"):
        argv += _ro_bind(prefix)
    exe_dir = os.path.dirname(python)
    if not exe_dir.startswith(("/usr/", prefix + "/")):
        argv += _ro_bind(exe_dir)
    size = str(tmpfs_mb << 20)
    argv += ["--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--size", size, "--tmpfs", "/tmp",
             "--perms", "1777", "--size", size, "--tmpfs", SANDBOX_DIR,
             "--ro-bind", INSIDE_PATH, HARNESS_PATH,
             "--remount-ro", "/dev", "--remount-ro", "/", "--chdir", "/", "--"]
    return argv


def unshare_argv() -> list[str]:
    """util-linux unshare: new pid/net/ipc/uts/mount namespaces; the host filesystem stays visible."""
    argv = ["unshare", "--fork", "--kill-child", "--pid", "--mount-proc", "--net", "--ipc", "--uts"]
    if os.geteuid() != 0:
        argv += ["--user", "--map-current-user"]
    return argv + ["--"]
