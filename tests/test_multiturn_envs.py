"""Multi-turn envs are ordinary Gymnasium envs: reset poses the task, each step takes a model turn and returns the
environment's reply; tool calls come back as results or errors, the final answer ends the episode with its
verdict, and max_turns truncates."""

import gymnasium as gym
import pytest

import rlvr
from rlvr.envs.builtin import calculator
from rlvr.envs.multiturn import ToolEnv


def call(expression: str) -> str:
    return '<tool_call>{"name": "calculator", "arguments": {"expression": "%s"}}</tool_call>' % expression


def test_calculator_env_answers_a_tool_call_then_scores_the_final_answer():
    env = gym.make("rlvr/Calculator-v0")
    obs, info = env.reset(seed=0)
    expression = env.unwrapped.problem.meta["expression"]
    assert obs == f"{expression} = ? You may call the calculator tool."
    assert info["tools"][0]["function"]["name"] == "calculator"
    obs, reward, terminated, truncated, info = env.step(call(expression))
    assert obs == env.unwrapped.problem.answer and (reward, terminated, truncated) == (0.0, False, False)
    assert [m["role"] for m in info["messages"]] == ["user", "assistant", "tool"]
    assert info["reply"] == [{"role": "tool", "name": "calculator", "content": obs}]
    obs, reward, terminated, truncated, info = env.step(f"The answer is {obs}.")
    assert (reward, terminated, truncated) == (1.0, True, False) and info["verdict"].correct
    assert [m["role"] for m in info["messages"]] == ["user", "assistant", "tool", "assistant"]


@pytest.mark.parametrize("turn,error", [
    (call("2 ** 8"), "error: ValueError: "),
    ('<tool_call>{"name": "calculator", "arguments": {"expr": "1"}}</tool_call>', "error: bad arguments for "),
    ('<tool_call>{"name": "python", "arguments": {}}</tool_call>', "error: unknown tool 'python'"),
    ("<tool_call>{calculator: 1 + 1}</tool_call>", "error: the tool call is not valid JSON"),
])
def test_bad_tool_calls_reach_the_model_and_the_episode_goes_on(turn, error):
    env = gym.make("rlvr/Calculator-v0")
    env.reset(seed=1)
    obs, reward, terminated, truncated, _ = env.step(turn)
    assert obs.startswith(error) and (reward, terminated, truncated) == (0.0, False, False)


def test_running_out_of_turns_truncates_with_a_verdict():
    env = gym.make("rlvr/Calculator-v0", max_turns=2)
    env.reset(seed=2)
    env.step(call("1 + 1"))
    _, reward, terminated, truncated, info = env.step(call("2 + 2"))
    assert (reward, terminated, truncated) == (0.0, False, True)
    assert not info["verdict"].correct and info["verdict"].error == "not finished within 2 turns"


def test_a_wrong_final_answer_ends_the_episode_unrewarded():
    env = gym.make("rlvr/Calculator-v0")
    env.reset(seed=3)
    _, reward, terminated, _, info = env.step("It is 7.")
    assert (reward, terminated) == (0.0, True) and info["verdict"].error == "not equivalent"


def test_guess_number_is_won_by_bisection_and_lost_by_running_out():
    env = gym.make("rlvr/GuessNumber-v0", high=100, max_turns=7)
    for seed in range(5):
        env.reset(seed=seed)
        low, high, steps = 1, 100, 0
        while True:
            guess = (low + high) // 2
            obs, reward, terminated, truncated, info = env.step(f"My guess: {guess}")
            steps += 1
            if terminated:
                assert reward == 1.0 and info["verdict"].extracted == str(guess) == env.unwrapped.problem.answer
                break
            assert not truncated and obs in ("higher", "lower")
            low, high = (guess + 1, high) if obs == "higher" else (low, guess - 1)
        assert steps <= 7
    env.reset(seed=0)
    assert env.step("no idea")[0] == "Reply with one integer."
    for _ in range(6):
        _, reward, terminated, truncated, _ = env.step("0")
    assert (reward, terminated, truncated) == (0.0, False, True)


def test_tool_env_gives_any_single_turn_task_tools():
    task = rlvr.make("rlvr/Arithmetic-v0", level=4).unwrapped
    env = ToolEnv(task, [calculator], max_turns=2)
    obs, info = env.reset(seed=0)
    assert obs == task.format_prompt(env.problem) and info["tools"] == env.toolbox.schemas
    assert env.step(call(env.problem.meta["expression"]))[0] == env.problem.answer
    assert env.step(env.problem.answer)[1] == 1.0


def test_code_feedback_answers_a_failed_attempt_with_the_sandboxs_error(data_dir):
    env = gym.make("rlvr/CodeFeedback-v0", path=str(data_dir / "humaneval_mini.jsonl"), max_turns=2)
    env.reset(options={"problem_id": "Mini/0"})
    wrong = "```python\ndef add(a: int, b: int) -> int:\n    return a - b\n```"
    obs, reward, terminated, truncated, info = env.step(wrong)
    assert (reward, terminated, truncated) == (0.0, False, False)
    assert obs.startswith("That did not pass: test 0: wrong answer") and info["reply"][0]["role"] == "user"
    right = "```python\ndef add(a: int, b: int) -> int:\n    return a + b\n```"
    _, reward, terminated, _, info = env.step(right)
    assert (reward, terminated) == (1.0, True) and info["verdict"].correct and info["turns"] == 2

    env.reset(options={"problem_id": "Mini/0"})
    env.step(wrong)
    _, reward, terminated, truncated, info = env.step(wrong)  # the last attempt fails too: its verdict stays
    assert (reward, terminated, truncated) == (0.0, False, True)
    assert info["verdict"].error.startswith("test 0: wrong answer")


def test_gsm8k_with_the_python_tool(data_dir, request):
    """Any single-turn task gets tools: GSM8K rows with the sandboxed python tool."""
    import json

    from rlvr.tools import python
    from rlvr.verifiers.worker import stop_helpers

    request.addfinalizer(stop_helpers)
    task = rlvr.make("rlvr/GSM8K-v0", path=str(data_dir / "gsm8k_sample.jsonl")).unwrapped
    env = ToolEnv(task, [python], tool_timeout=30.0)
    [natalia] = [p for p in task.source.distinct(len(task.source)) if p.answer == "72"]
    _, info = env.reset(options={"problem": natalia})
    assert info["tools"][0]["function"]["name"] == "python"
    code = {"name": "python", "arguments": {"code": "print(48 + 48 // 2)"}}
    obs, reward, terminated, _, _ = env.step(f"<tool_call>{json.dumps(code)}</tool_call>")
    assert (obs, reward, terminated) == ("72\n", 0.0, False)
    _, reward, terminated, _, info = env.step("So the answer is \\boxed{72}.")
    assert (reward, terminated) == (1.0, True) and info["verdict"].correct
