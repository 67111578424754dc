"""Module-level tools for tests/test_tools.py (tools run in worker processes, so they must be importable)."""

import time


def add(x: int, y: int = 0) -> int:
    """Add two integers.

    Args:
        x: the first
        y: the second
    """
    return x + y


def fail(reason: str) -> str:
    """Always raises.

    Args:
        reason: what the error says
    """
    raise ValueError(reason)


def sleep(seconds: float) -> str:
    """Sleeps, ignoring signals' niceties.

    Args:
        seconds: how long
    """
    time.sleep(seconds)
    return "awake"


def shout(text: str) -> str:
    """Repeats the text many times.

    Args:
        text: what to repeat
    """
    return text * 10_000
