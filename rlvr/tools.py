"""Tools for multi-turn episodes. A tool is a plain Python function with type hints and a docstring; the model sees
its JSON schema (transformers' `get_json_schema`, what chat templates take as `tools=`), writes calls in its text,
and a registered parser reads them (default "hermes": `<tool_call>{"name": ..., "arguments": {...}}</tool_call>`,
the Hermes / Qwen format; "pythonic": `[name(key=value, ...)]`, Llama 3.2's). `Toolbox.run` runs a call in a worker process under a hard deadline and always returns a
tool message: a malformed call, an unknown tool, bad arguments, an exception or a timeout is said to the model
in the conversation, never raised in the trainer. The `python` tool runs model-written code in the code sandbox,
never on the host."""

from __future__ import annotations

import ast
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


PYTHONIC_START = re.compile(r"\[\s*[A-Za-z_]\w*\s*\(")


@TOOL_PARSERS.register("pythonic")
def parse_pythonic(text: str) -> list[ParsedCall]:
    """The calls of a Python list of calls, `[name(key=value, ...), ...]`, starting at the first `[name(` of
    `text` (the format of Llama 3.2's and vLLM's "pythonic" parser); arguments are keyword literals."""
    start = PYTHONIC_START.search(text)
    if start is None:
        return []
    end = text.rfind("]")
    body = text[start.start():] if end < start.start() else text[start.start():end + 1]
    try:
        tree = ast.parse(body, mode="eval").body
    except SyntaxError as exc:
        return [MalformedCall(f"the tool call is not a Python list of calls ({exc.msg})")]
    if not isinstance(tree, ast.List):
        return [MalformedCall("the tool calls are one Python list, [name(key=value, ...)]")]
    calls: list[ParsedCall] = []
    for node in tree.elts:
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
            calls.append(MalformedCall("each tool call is name(key=value, ...)"))
        elif node.args or any(k.arg is None for k in node.keywords):
            calls.append(MalformedCall(f"write the arguments of {node.func.id!r} as key=value"))
        else:
            try:
                calls.append(ToolCall(node.func.id, {k.arg: ast.literal_eval(k.value) for k in node.keywords}))
            except ValueError:
                calls.append(MalformedCall(f"the arguments of {node.func.id!r} must be literals"))
    return calls


def write_hermes(calls: Sequence[ToolCall]) -> str:
    """`calls` as the model writes them in the Hermes format (what `parse_hermes` reads)."""
    return "".join(f"<tool_call>{json.dumps({'name': c.name, 'arguments': c.arguments})}</tool_call>"
                   for c in calls)


def write_pythonic(calls: Sequence[ToolCall]) -> str:
    """`calls` as a Python list of calls (what `parse_pythonic` reads)."""
    return "[" + ", ".join(f"{c.name}({', '.join(f'{k}={v!r}' for k, v in c.arguments.items())})"
                           for c in calls) + "]"


# How the built-in formats are written (the warm-start's demonstrations write calls; a plugin parser need not)
TOOL_CALL_WRITERS: dict[str, Callable[[Sequence[ToolCall]], str]] = {"hermes": write_hermes,
                                                                      "pythonic": write_pythonic}

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
        self.parser, self.timeout, self.max_chars = parser, timeout, max_chars

    def calls(self, text: str) -> list[ParsedCall]:
        """The calls in a model turn."""
        return self.parse(text)

    def write(self, calls: Sequence[ToolCall]) -> str:
        """`calls` in the text the parser reads (for demonstrations); only the built-in formats have a writer."""
        if self.parser not in TOOL_CALL_WRITERS:
            raise ValueError(f"tool parser {self.parser!r} has no writer of calls; those that do: "
                             f"{', '.join(TOOL_CALL_WRITERS)}")
        return TOOL_CALL_WRITERS[self.parser](calls)

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
