"""Verifiers turn (problem, completion) into a Verdict; executors score batches of them. Built-ins register by
name on import (`rlvr.verifiers.registry`); plugins add more through the `rlvr.verifiers` entry-point group
(entry-point name = verifier name, object = factory)."""

from rlvr.verifiers import (  # noqa: F401  (they register)
    code, countdown, format, judge, math_verifier, overlong, reward_model)
from rlvr.verifiers.base import Compose, Executor, SerialExecutor, Verifier
from rlvr.verifiers.executors import EXECUTORS, make_executor
from rlvr.verifiers.pool import VerifierPool
from rlvr.verifiers.registry import VERIFIERS, make, names, register
from rlvr.verifiers.worker import call_with_deadline, in_worker

__all__ = ["EXECUTORS", "VERIFIERS", "Compose", "Executor", "SerialExecutor", "Verifier", "VerifierPool",
           "call_with_deadline", "in_worker", "make", "make_executor", "names", "register"]
