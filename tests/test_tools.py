"""Tools: schemas from type hints and docstrings (transformers' helper), Hermes-format calls parsed from the model's
text, and every failure (malformed call, unknown tool, bad arguments, an exception, a timeout) answered with a tool
message instead of a crash."""

import time
from pathlib import Path

import pytest
from tool_fixtures import add, fail, shout, sleep

from rlvr.tools import (TOOL_PARSERS, MalformedCall, ToolCall, Toolbox, parse_hermes, parse_pythonic, write_hermes,
                        write_pythonic)


@pytest.fixture(scope="module")
def box():
    return Toolbox([add, fail, sleep, shout], timeout=1.0)


def test_schemas_come_from_type_hints_and_docstrings(box):
    add_schema = box.schemas[0]["function"]
    assert add_schema["name"] == "add" and add_schema["description"] == "Add two integers."
    assert add_schema["parameters"]["properties"]["x"] == {"type": "integer", "description": "the first"}
    assert add_schema["parameters"]["required"] == ["x"]


def test_hermes_calls_are_parsed_in_order():
    text = ('I will add. <tool_call>{"name": "add", "arguments": {"x": 2, "y": 3}}</tool_call> and '
            '<tool_call>{"name": "add", "arguments": "{\\"x\\": 1}"}</tool_call> then <tool_call>{"name": "ad')
    calls = parse_hermes(text)
    assert calls[:2] == [ToolCall("add", {"x": 2, "y": 3}), ToolCall("add", {"x": 1})]
    assert isinstance(calls[2], MalformedCall) and "not valid JSON" in calls[2].error
    assert parse_hermes("no call here") == []
    assert parse_hermes('<tool_call>["add"]</tool_call>')[0] == MalformedCall(
        'a tool call is a JSON object {"name": ..., "arguments": {...}}')
    assert TOOL_PARSERS.get("hermes") is parse_hermes


def test_pythonic_calls_are_read_as_literals_never_evaluated():
    text = "Let me add. [add(x=2, y=3), shout(text='hi')] done"
    assert parse_pythonic(text) == [ToolCall("add", {"x": 2, "y": 3}), ToolCall("shout", {"text": "hi"})]
    assert parse_pythonic("no call, [1, 2] is a list") == []
    assert parse_pythonic("[add(2, 3)]") == [MalformedCall("write the arguments of 'add' as key=value")]
    assert parse_pythonic("[add(x=__import__('os').getpid())]") == [
        MalformedCall("the arguments of 'add' must be literals")]
    [unclosed] = parse_pythonic("[add(x=1")  # generation stopped inside the call
    assert unclosed.error.startswith("the tool call is not a Python list of calls (")
    assert parse_pythonic("[add(x=1), 3]")[1] == MalformedCall("each tool call is name(key=value, ...)")
    assert TOOL_PARSERS.get("pythonic") is parse_pythonic


@pytest.mark.parametrize("parse,write", [(parse_hermes, write_hermes), (parse_pythonic, write_pythonic)])
def test_the_built_in_formats_write_what_they_read(parse, write):
    calls = [ToolCall("add", {"x": 1, "y": -2}), ToolCall("shout", {"text": "it's \"quoted\""})]
    assert parse(write(calls)) == calls
    assert Toolbox([add, shout], parser="pythonic").write(calls[:1]) == "[add(x=1, y=-2)]"


def test_a_parser_without_a_writer_cannot_write_demonstrations():
    TOOL_PARSERS.register("test-plain", parse_hermes)
    with pytest.raises(ValueError, match="tool parser 'test-plain' has no writer of calls"):
        Toolbox([add], parser="test-plain").write([ToolCall("add", {"x": 1})])


def test_a_call_returns_its_result_as_a_tool_message(box):
    [call] = box.calls('<tool_call>{"name": "add", "arguments": {"x": 40, "y": 2}}</tool_call>')
    assert box.run(call) == {"role": "tool", "name": "add", "content": "42"}


@pytest.mark.parametrize("text,expected", [
    ('<tool_call>{"name": "mul", "arguments": {}}</tool_call>', "error: unknown tool 'mul'; the tools are add, "),
    ('<tool_call>{"name": "add", "arguments": {}}</tool_call>', "error: bad arguments for add: missing a required"),
    ('<tool_call>{"name": "add", "arguments": {"x": 1, "z": 2}}</tool_call>', "error: bad arguments for add: got an"),
    ('<tool_call>{"name": "add", "arguments": {"x": "1"}}</tool_call>', "error: bad arguments for add: 'x' must be "
                                                                        "integer, got '1'"),
    ('<tool_call>{"name": "add", "arguments": {"x": true}}</tool_call>', "error: bad arguments for add: 'x' must be"),
    ('<tool_call>{"name": "fail", "arguments": {"reason": "no"}}</tool_call>', "error: ValueError: no"),
    ('<tool_call>{"name": add}</tool_call>', "error: the tool call is not valid JSON"),
])
def test_every_failure_reaches_the_model_as_a_message(box, text, expected):
    [call] = box.calls(text)
    message = box.run(call)
    assert message["role"] == "tool" and message["content"].startswith(expected), message


def test_a_tool_past_its_deadline_is_killed_and_said(box):
    start = time.monotonic()
    [call] = box.calls('<tool_call>{"name": "sleep", "arguments": {"seconds": 60}}</tool_call>')
    assert box.run(call)["content"] == "error: sleep did not finish within 1 s"
    assert time.monotonic() - start < 10
    [call] = box.calls('<tool_call>{"name": "add", "arguments": {"x": 1}}</tool_call>')
    assert box.run(call)["content"] == "1"  # the toolbox goes on


def test_long_results_are_cut(box):
    [call] = box.calls('<tool_call>{"name": "shout", "arguments": {"text": "ab"}}</tool_call>')
    content = box.run(call)["content"]
    assert content.startswith("abab") and content.endswith("... (20000 characters, cut at 2000)")


def test_tools_that_cannot_run_in_a_worker_are_refused_at_once():
    def local(x: int) -> int:
        """Local.

        Args:
            x: x
        """
        return x

    with pytest.raises(TypeError, match="tool 'local' runs in a worker process"):
        Toolbox([local])
    with pytest.raises(KeyError, match="unknown tool parser 'xml'"):
        Toolbox([add], parser="xml")


def test_the_python_tool_runs_model_code_in_the_sandbox(request):
    """What the program printed, then the error that ended it; hostile code is contained as the code verifier's
    is: no network, no host files, a deadline."""
    from rlvr.tools import python
    from rlvr.verifiers.worker import stop_helpers

    box = Toolbox([python], timeout=30.0)
    request.addfinalizer(stop_helpers)  # the helper workers' sandboxes end with them

    def run(code: str) -> str:
        import json

        [call] = box.calls("<tool_call>" + json.dumps({"name": "python", "arguments": {"code": code}}) + "</tool_call>")
        return box.run(call)["content"]

    assert run("print(17 * 24)\nprint('ok')") == "408\nok\n"
    assert run("print('before')\nraise ValueError('bad input')") == "before\nValueError: bad input\n"
    assert run("def f(:\n") .startswith("SyntaxError: ")
    assert run("import socket\nsocket.create_connection(('1.1.1.1', 53), timeout=2)").startswith("OSError")
    host_secret = Path(__file__)  # a host file the sandbox must not see
    seen = run(f"print(open({str(host_secret)!r}).read())")
    assert seen.startswith(("FileNotFoundError", "PermissionError")) and "def test_" not in seen
    start = time.monotonic()
    assert run("while True:\n    pass").endswith("[timeout]")
    assert time.monotonic() - start < 25
