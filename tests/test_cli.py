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
