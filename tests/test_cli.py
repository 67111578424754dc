import pytest

from rlvr.cli import main
from rlvr.envs.tasks.arithmetic import Arithmetic


def test_list_shows_each_builtin_env_on_one_line(capsys):
    assert main(["list", "envs"]) == 0
    lines = capsys.readouterr().out.splitlines()
    for env_id in ["rlvr/Arithmetic-v0", "rlvr/Countdown-v0", "rlvr/GSM8K-v0", "rlvr/MATH-v0", "rlvr/HumanEval-v0"]:
        assert sum(line.startswith(env_id + " ") for line in lines) == 1


def test_list_everything_names_verifiers_and_algorithms(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert all(f"\n{name} " in out for name in ["math", "code", "overlong", "format", "dapo", "gspo", "cispo"])


def test_verify_prints_the_verdict_for_a_chosen_problem(capsys):
    problem = Arithmetic(1).get("arith-L1-5")
    assert main(["verify", "--env", "rlvr/Arithmetic-v0", "--env-kwarg", "level=1", "--problem-id", problem.id,
                 "--completion", problem.answer]) == 0
    out = capsys.readouterr().out
    assert problem.id in out and "reward=1 correct=True" in out
    main(["verify", "--env", "rlvr/Arithmetic-v0", "--env-kwarg", "level=1", "--problem-id", problem.id,
          "--completion", "no number"])
    assert "reward=0 correct=False" in capsys.readouterr().out


@pytest.mark.parametrize("command", [[], ["list"], ["verify"], ["train"], ["eval"], ["plot"]])
def test_help_everywhere(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([*command, "--help"])
    assert exc.value.code == 0 and "usage: rlvr" in capsys.readouterr().out


def test_list_shows_turns_and_tools(capsys):
    assert main(["list", "envs"]) == 0
    rows = {line.split()[0]: line.split()[1:5] for line in capsys.readouterr().out.splitlines()[2:]}
    assert rows["rlvr/Arithmetic-v0"][:2] == ["1", "-"]
    assert rows["rlvr/Calculator-v0"][:3] == ["up", "to", "3"] and rows["rlvr/Calculator-v0"][3] == "calculator"
    assert rows["rlvr/GuessNumber-v0"][:4] == ["up", "to", "7", "-"]


def test_train_takes_an_envs_defaults_for_the_tiny_model_below_the_flags():
    from rlvr.cli import build_parser, train_config
    from rlvr.envs import tiny_defaults

    def config(*argv):
        return train_config(build_parser().parse_args(["train", *argv]))

    cfg = config("--env", "rlvr/Calculator-v0", "max_new_tokens=40", "env_kwargs.max_turns=2")
    defaults = tiny_defaults("rlvr/Calculator-v0")
    assert (cfg.max_new_tokens, cfg.warmstart_steps, cfg.warmstart_tool_prob) == (
        40, defaults["warmstart_steps"], defaults["warmstart_tool_prob"])
    assert cfg.env_kwargs == {**defaults["env_kwargs"], "max_turns": 2}  # merged, the command line wins
    other_model = config("--env", "rlvr/Calculator-v0", "--model", "some/model")
    assert other_model.env_kwargs == {} and other_model.max_new_tokens == 8  # the tiny model's defaults only
    assert config().env_kwargs == {"level": 2} and tiny_defaults("rlvr/Arithmetic-v0") == {}
