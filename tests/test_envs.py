import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import rlvr
from rlvr import envs
from rlvr.envs.spaces import UnicodeText
from rlvr.types import Completion

from conftest import ENV_KWARGS

BUILTIN = ["rlvr/Arithmetic-v0", "rlvr/Countdown-v0", "rlvr/GSM8K-v0", "rlvr/MATH-v0", "rlvr/HumanEval-v0"]


def test_builtin_envs_are_registered_in_gymnasium():
    assert set(BUILTIN) <= set(envs.names())
    assert all(gym.spec(i).namespace == "rlvr" for i in BUILTIN)


@pytest.mark.parametrize("env_id", envs.names())
def test_check_env_passes_on_every_registered_env(env_id):
    env = gym.make(env_id, **ENV_KWARGS.get(env_id, {}))
    check_env(env.unwrapped, skip_render_check=False)
    env.close()


@pytest.mark.parametrize("env_id", envs.names())
def test_reset_is_deterministic_under_a_seed(env_id):
    env = rlvr.make(env_id, **ENV_KWARGS.get(env_id, {}))
    obs_a, info_a = env.reset(seed=123)
    obs_b, info_b = env.reset(seed=123)
    assert obs_a == obs_b and info_a["problem_id"] == info_b["problem_id"]
    assert env.observation_space.contains(obs_a)
    draws = {env.reset(seed=s)[1]["problem_id"] for s in range(8)}
    assert len(draws) > 1


def test_gymnasium_make_with_module_prefix_works_in_a_fresh_interpreter():
    code = ("import gymnasium as gym; env = gym.make('rlvr:rlvr/Arithmetic-v0', level=3); "
            "print(env.reset(seed=0)[0])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().endswith("=")


def test_step_scores_with_the_verifier_and_terminates():
    env = rlvr.make("rlvr/Arithmetic-v0", level=2)
    prompt, info = env.reset(seed=0)
    problem = env.unwrapped.problem
    assert prompt == f"{problem.prompt} =" and info["problem_id"] == problem.id
    _, reward, terminated, truncated, info = env.step(problem.answer)
    assert (reward, terminated, truncated, info["correct"]) == (1.0, True, False, True)
    _, reward, _, truncated, info = env.step(Completion(str(int(problem.answer) + 1), finish_reason="length"))
    assert reward == 0.0 and truncated and not info["verdict"].correct


def test_reset_options_pick_a_problem_and_templates_apply(data_dir):
    env = rlvr.make("rlvr/GSM8K-v0", path=str(data_dir / "gsm8k_sample.jsonl"), template="Q: {prompt}\nA:",
                    system_prompt="Be brief.")
    prompt, info = env.reset(options={"problem_id": "gsm8k-2"})
    assert prompt.startswith("Q: Weng earns") and prompt.endswith("A:")
    assert info["messages"][0] == {"role": "system", "content": "Be brief."}
    assert info["messages"][1] == {"role": "user", "content": prompt}
    with pytest.raises(KeyError, match="no problem with id 'nope'"):
        env.reset(options={"problem_id": "nope"})


def test_file_backed_env_says_path_is_missing():
    with pytest.raises(ValueError, match="pass its data with the keyword `path=`"):
        rlvr.make("rlvr/GSM8K-v0")


def test_step_before_reset_and_bad_template_are_clear_errors():
    env = rlvr.make("rlvr/Arithmetic-v0").unwrapped
    with pytest.raises(RuntimeError, match="reset"):
        env.step("1")
    with pytest.raises(ValueError, match="template must contain"):
        rlvr.make("rlvr/Arithmetic-v0", template="no placeholder")


def test_unicode_text_space_holds_real_text():
    space = UnicodeText(64)
    assert space.contains(r"Compute $\frac{1}{2}$, then ½ ≤ 1 — done!")
    assert not space.contains("x" * 65) and not space.contains(b"bytes") and not space.contains("a\x00b")
    assert all(space.contains(space.sample()) for _ in range(20))


def test_unknown_env_gets_a_hint():
    with pytest.raises(gym.error.NameNotFound, match="Did you mean 'rlvr/Arithmetic-v0'"):
        rlvr.make("rlvr/Arithmetc-v0")


def test_render_ansi_shows_the_verdict():
    env = rlvr.make("rlvr/Countdown-v0", render_mode="ansi")
    env.reset(seed=0)
    env.step("<answer>1 + 1</answer>")
    text = env.render()
    assert "reward=0" in text and "uses numbers not given" in text


@pytest.mark.parametrize("executor", ["serial", "process"])
def test_group_vector_env_blocks_share_a_problem(executor):
    venv = rlvr.make_vec("rlvr/Arithmetic-v0", num_prompts=3, group_size=4, executor=executor, level=2)
    assert isinstance(venv, gym.vector.VectorEnv) and venv.num_envs == 12
    obs, info = venv.reset(seed=5)
    assert len(obs) == 12 and venv.observation_space.contains(obs)
    ids = info["problem_id"]
    assert all(len(set(ids[b * 4:(b + 1) * 4])) == 1 for b in range(3)) and len(set(ids)) == 3
    answers = [p.answer for p in venv.problems]
    actions = [answers[i // 4] if i % 4 < i // 4 + 1 else "wrong" for i in range(12)]
    _, rewards, terminated, truncated, info = venv.step(actions)
    assert rewards.shape == (12,) and rewards.dtype == np.float32 and terminated.all() and not truncated.any()
    groups = venv.groups(actions, info)
    assert [g.num_correct for g in groups] == [1, 2, 3]
    assert [g.problem.id for g in groups] == [ids[0], ids[4], ids[8]]
    assert np.array_equal(rewards, np.array([r for g in groups for r in g.rewards], dtype=np.float32))
    with pytest.raises(RuntimeError, match="reset"):
        venv.step(actions)
    venv.close()


def test_group_vector_env_is_seeded_and_takes_problem_ids():
    venv = rlvr.make_vec("rlvr/Countdown-v0", num_prompts=2, group_size=2, executor="serial")
    assert venv.reset(seed=1)[0] == venv.reset(seed=1)[0]
    _, info = venv.reset(options={"problem_ids": ["countdown-3-25-1", "countdown-3-25-2"]})
    assert list(info["problem_id"]) == ["countdown-3-25-1"] * 2 + ["countdown-3-25-2"] * 2
    with pytest.raises(ValueError, match="expected 4 completions"):
        venv.step(["a"])
    with pytest.raises(ValueError, match="expected num_prompts=2"):
        venv.reset(options={"problem_ids": ["countdown-3-25-1"]})
