import pytest

from rlvr.registry import Registry, suggest
from rlvr.types import Completion, Group, Problem, Verdict


def test_completion_coerce_accepts_str_and_completion():
    c = Completion.coerce("42")
    assert c.text == "42" and c.finish_reason == "stop" and not c.truncated
    same = Completion("x", token_ids=[1], logprobs=[-0.5], finish_reason="length")
    assert Completion.coerce(same) is same and same.truncated
    with pytest.raises(TypeError, match="str or Completion"):
        Completion.coerce(42)


def test_group_views_and_length_check():
    p = Problem(id="p", prompt="1 + 1", answer="2")
    g = Group(p, [Completion("2"), Completion("3")], [Verdict(1.0, True), Verdict(0.0, False)])
    assert g.rewards == [1.0, 0.0] and g.num_correct == 1 and len(g) == 2
    with pytest.raises(ValueError, match="2 completions but 1 verdicts"):
        Group(p, [Completion("2"), Completion("3")], [Verdict(1.0, True)])


def test_registry_register_make_names_and_typo_hint():
    reg = Registry("widget", "rlvr.test-no-such-group")

    @reg.register("alpha")
    class Alpha:
        def __init__(self, size: int = 1):
            self.size = size

    reg.register("beta", lambda: "b")
    assert reg.names() == ["alpha", "beta"]
    assert reg.make("alpha", size=3).size == 3
    assert "alpha" in reg and "gamma" not in reg
    with pytest.raises(KeyError, match="Did you mean 'alpha'"):
        reg.get("alpah")
    with pytest.raises(ValueError, match="already registered"):
        reg.register("beta", lambda: "other")


def test_suggest_is_empty_for_unrelated_names():
    assert suggest("zzzz", ["alpha", "beta"]) == ""
