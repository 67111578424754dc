"""Tools for multi-turn episodes. A tool is a plain Python function with type hints and a docstring; the model sees
its JSON schema (transformers' `get_json_schema`, what chat templates take as `tools=`), writes calls in its text,
and a registered parser reads them (default "hermes": `<tool_call>{"name": ..., "arguments": {...}}</tool_call>`,
the Hermes / Qwen format). `Toolbox.run` runs a call in a worker process under a hard deadline and always returns a
tool message: a malformed call, an unknown tool, bad arguments, an exception or a timeout is said to the model
in the conversation, never raised in the trainer. The `python` tool runs model-written code in the code sandbox,
never on the host."""

from __future__ import annotations

import functools
import inspect
import json
import pickle
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from transformers.utils import get_json_schema

from rlvr.registry import Registry
from rlvr.types import Message
from rlvr.verifiers.worker import call_with_deadline


@dataclass
class ToolCall:
    """One call the model wrote: the tool's name and its keyword arguments."""

    name: str
    arguments: dict[str, Any]


@dataclass
class MalformedCall:
    """A call block the parser could not read; `error` says why (it goes back to the model)."""

    error: str


ParsedCall = ToolCall | MalformedCall
ToolParser = Callable[[str], list[ParsedCall]]

TOOL_PARSERS: Registry[list[ParsedCall]] = Registry("tool parser", "rlvr.tool_parsers")

HERMES_CALL = re.compile(r"<tool_call>(.*?)(?:</tool_call>|\Z)", re.DOTALL)


@TOOL_PARSERS.register("hermes")
def parse_hermes(text: str) -> list[ParsedCall]:
    """Every `<tool_call>` block of `text`, in order: JSON with a string "name" and an object "arguments" (an
    unclosed last block counts, as generation may stop inside it)."""
    calls: list[ParsedCall] = []
    for body in HERMES_CALL.findall(text):
        try:
            data = json.loads(body)
        except json.JSONDecodeError as exc:
            calls.append(MalformedCall(f"the tool call is not valid JSON ({exc.msg} at character {exc.pos})"))
            continue
        if not isinstance(data, dict) or not isinstance(data.get("name"), str):
            calls.append(MalformedCall('a tool call is a JSON object {"name": ..., "arguments": {...}}'))
            continue
        arguments = data.get("arguments", {})
        if isinstance(arguments, str):  # some models write the arguments as a JSON string
            try:
                arguments = json.loads(arguments)
            except json.JSONDecodeError:
                pass
        if not isinstance(arguments, dict):
            calls.append(MalformedCall(f"the arguments of {data['name']!r} must be a JSON object"))
            continue
        calls.append(ToolCall(data["name"], arguments))
    return calls


JSON_TYPES = {"string": str, "integer": int, "number": (int, float), "boolean": bool, "array": list, "object": dict}


class Toolbox:
    """The tools of an env: their schemas for the chat template, the parser for the model's calls, and `run`,
    which answers every call with a tool message. Tools run in a worker process (so they must be importable,
    module-level functions), each call killed after `timeout` seconds; a result is cut at `max_chars` characters."""

    def __init__(self, tools: Sequence[Callable[..., Any]], timeout: float = 5.0, parser: str = "hermes",
                 max_chars: int = 2000) -> None:
        if timeout <= 0 or max_chars < 1:
            raise ValueError(f"timeout must be > 0 seconds and max_chars >= 1, got {timeout}, {max_chars}")
        self.tools = {fn.__name__: fn for fn in tools}
        if len(self.tools) != len(tools):
            raise ValueError(f"tool names must be unique, got {[fn.__name__ for fn in tools]}")
        for name, fn in self.tools.items():
            try:
                pickle.dumps(fn)
            except Exception as exc:
                raise TypeError(f"tool {name!r} runs in a worker process, so it must be a module-level function "
                                f"(it cannot be pickled: {exc})") from exc
        self.schemas = [get_json_schema(fn) for fn in tools]  # a missing type hint or docstring raises here
        self.parameters = {s["function"]["name"]: s["function"]["parameters"] for s in self.schemas}
        self.parse: ToolParser = TOOL_PARSERS.get(parser)
        self.timeout, self.max_chars = timeout, max_chars

    def calls(self, text: str) -> list[ParsedCall]:
        """The calls in a model turn."""
        return self.parse(text)

    def run(self, call: ParsedCall) -> Message:
        """The tool message that answers `call`: its result, or "error: ..." saying what went wrong."""
        if isinstance(call, MalformedCall):
            return tool_message("invalid", f"error: {call.error}")
        if call.name not in self.tools:
            return tool_message(call.name, f"error: unknown tool {call.name!r}; the tools are "
                                           f"{', '.join(sorted(self.tools))}")
        problem = self.argument_error(call)
        if problem:
            return tool_message(call.name, f"error: {problem}")
        ok, value = call_with_deadline(functools.partial(self.tools[call.name], **call.arguments), (), self.timeout)
        if ok:
            text = value if isinstance(value, str) else json.dumps(value, default=str)
            if len(text) > self.max_chars:  # a result the context cannot afford: its head, and how much there was
                text = f"{text[:self.max_chars]}... ({len(text)} characters, cut at {self.max_chars})"
            return tool_message(call.name, text)
        if value.startswith("timeout"):
            return tool_message(call.name, f"error: {call.name} did not finish within {self.timeout:g} s")
        return tool_message(call.name, f"error: {value.removeprefix('exception: ')}")

    def argument_error(self, call: ToolCall) -> str | None:
        """Why `call`'s arguments do not fit its tool (missing, unexpected, or of the wrong JSON type), or None."""
        try:
            inspect.signature(self.tools[call.name]).bind(**call.arguments)
        except TypeError as exc:
            return f"bad arguments for {call.name}: {exc}"
        properties = self.parameters[call.name].get("properties", {})
        for key, value in call.arguments.items():
            expected = JSON_TYPES.get(properties.get(key, {}).get("type"))
            if expected and (not isinstance(value, expected) or (isinstance(value, bool) and expected is not bool)):
                return f"bad arguments for {call.name}: {key!r} must be {properties[key]['type']}, got {value!r}"
        return None


def python(code: str) -> str:
    """Run a Python program and return what it printed (and the error that ended it, if any).

    Args:
        code: a complete Python program; print the values you need
    """
    from rlvr.verifiers.code import run_program  # the sandbox: the code verifier's isolation, limits and deadline

    return run_program(code)


def tool_message(name: str, content: str) -> Message:
    """A chat message with the role chat templates give tool results."""
    return {"role": "tool", "name": name, "content": content}
