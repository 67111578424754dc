"""reasoning-gym's data sets as `rlvr/ReasoningGym-v0` (when the extra is installed): every one passes the env
checker, its own gold answer scores 1 through the env, the held-out split is disjoint by content, the scorer
pickles into a process pool, and configs and curriculum levels reach the generator."""

import pickle

import gymnasium
import pytest
from gymnasium.utils.env_checker import check_env

import rlvr
import rlvr.plot
from rlvr.types import Completion
from rlvr.verifiers import make_executor

rg = pytest.importorskip("reasoning_gym")
from rlvr.envs.tasks.reasoning_gym import ReasoningGym, task_names  # noqa: E402

TASKS = task_names()
# the one data set that needs a config: it mixes others (given as dicts, as a config file would)
TASK_KWARGS = {"composite": {"datasets": [{"name": "leg_counting", "weight": 1, "config": {}},
                                          {"name": "basic_arithmetic", "weight": 2, "config": {}}]}}


def gold(entry: dict) -> str:
    return f"<think>the data set's own answer</think>\n<answer>{entry['answer']}</answer>"


@pytest.mark.parametrize("task", TASKS)
def test_every_data_set_is_an_env_that_checks_and_scores_its_gold_answer(task):
    env = gymnasium.make("rlvr/ReasoningGym-v0", task=task, **TASK_KWARGS.get(task, {}))
    check_env(env.unwrapped, skip_render_check=False)
    scored = 0
    for seed in range(3):
        _, info = env.reset(seed=seed)
        problem = env.unwrapped.problem
        entry = problem.meta["entry"]
        assert info["messages"][0]["role"] == "system" and "<answer>" in info["messages"][0]["content"]
        if entry.get("answer") is None:  # a task whose answers are checked, not compared (none has a gold)
            continue
        _, reward, terminated, _, step_info = env.step(gold(entry))
        assert terminated and reward == 1.0 and step_info["correct"], (task, entry["answer"], step_info["verdict"])
        scored += 1
    env.close()


def test_the_held_out_split_is_disjoint_by_content_and_seeded():
    train = ReasoningGym("basic_arithmetic", split="train", heldout_fraction=0.3)
    test = ReasoningGym("basic_arithmetic", split="test", heldout_fraction=0.3)
    held_out = {p.prompt for p in test.distinct(60)}
    assert len(held_out) == 60 and not held_out & {p.prompt for p in train.distinct(200)}
    assert [p.id for p in test.distinct(10)] == [p.id for p in ReasoningGym(
        "basic_arithmetic", split="test", heldout_fraction=0.3).distinct(10)]
    problem = test.distinct(1)[0]
    assert test.get(problem.id) == problem  # an id rebuilds its problem


def test_wrong_and_missing_answers_score_below_one_with_a_reason():
    env = rlvr.make("rlvr/ReasoningGym-v0", task="leg_counting").unwrapped
    env.reset(seed=0)
    answer = env.problem.answer
    _, reward, *_, info = env.step(f"<answer>{int(answer) + 1}</answer>")
    assert reward < 1 and not info["correct"] and "not equivalent" in info["verdict"].error
    _, reward, *_, info = env.step(f"the answer is {answer}")  # no tags: reasoning-gym's format is the task
    assert reward == 0 and info["verdict"].error.startswith("no answer found")


def test_the_scorer_pickles_and_runs_in_a_process_pool():
    env = rlvr.make("rlvr/ReasoningGym-v0", task="basic_arithmetic").unwrapped
    problems = [env.source.sample(env.np_random) for _ in range(6)]
    verifier = pickle.loads(pickle.dumps(env.verifier))
    items = [(p, Completion(gold(p.meta["entry"]) if i % 2 else "<answer>x</answer>")) for i, p in enumerate(problems)]
    pool = make_executor("process", num_workers=2)
    try:
        verdicts = pool.map(verifier, items)
    finally:
        pool.close()
    assert [v.correct for v in verdicts] == [bool(i % 2) for i in range(6)]


def test_config_fields_and_curriculum_levels_reach_the_generator():
    easy = ReasoningGym("leg_counting", levels=0)
    hard = ReasoningGym("leg_counting", levels={"num_animals": 3})
    assert easy.curriculum.get_attr_level("num_animals") == 0 and hard.curriculum.get_attr_level("num_animals") == 3
    assert easy.config["max_animals"] < hard.config["max_animals"]
    few = ReasoningGym("leg_counting", min_animals=2, max_animals=2)
    assert all(p.meta["entry"]["metadata"]["num_animals"] == 2 for p in few.distinct(10))
    with pytest.raises(ValueError, match="unknown config field\\(s\\) \\['animals'\\]"):
        ReasoningGym("leg_counting", animals=3)
    with pytest.raises(ValueError, match="no curriculum attribute\\(s\\) \\['legs'\\]"):
        ReasoningGym("leg_counting", levels={"legs": 1})
    with pytest.raises(ValueError, match="no data set 'leg_countin'"):
        ReasoningGym("leg_countin")


def test_rlvr_list_shows_the_tasks(capsys):
    from rlvr.cli import main

    assert main(["list", "envs"]) == 0
    out = capsys.readouterr().out
    assert "rlvr/ReasoningGym-v0" in out and all(f"task={name} " in out for name in TASKS)


def test_rlvr_train_runs_a_reasoning_gym_task_with_the_pool_executor(tmp_path):
    from rlvr.cli import main

    out = tmp_path / "run"
    assert main(["train", "--env", "rlvr/ReasoningGym-v0", "--out-dir", str(out), "--steps", "2",
                 "env_kwargs.task=leg_counting", "env_kwargs.levels=0", "executor=process", "warmstart_steps=0",
                 "num_prompts=4", "group_size=2", "max_new_tokens=6", "eval_problems=4", "eval_k=1",
                 "progress=False", "report_to=[]", "chat_template=False"]) == 0
    records = [r for r in rlvr.plot.load_metrics(out) if "reward" in r]
    assert [r["step"] for r in records] == [1, 2] and all(0 <= r["reward"] <= 1 for r in records)


@pytest.mark.parametrize("task", ["spiral_matrix", "n_queens", "simple_integration", "countdown", "puzzle24"])
def test_a_scorer_that_evals_answers_refuses_code(task, tmp_path):
    """These data sets' own scorers `eval` the answer (or parse it with sympy, which evaluates generated code): an
    answer that is code gets a 'refused' verdict and never runs; the gold answer still scores 1."""
    env = rlvr.make("rlvr/ReasoningGym-v0", task=task).unwrapped
    env.reset(seed=0)
    target = tmp_path / "pwned"
    *_, info = env.step(f'<answer>__import__("os").system("touch {target}")</answer>')
    assert not target.exists() and info["verdict"].error.startswith("refused: the answer is code")
    assert env.step(gold(env.problem.meta["entry"]))[1] == 1.0
