"""The overlong length penalty against DAPO's formula, truncation masking, token counting with and without a
tokenizer, the format verifier's partial credit, and Compose of math + overlong keeping both parts."""

from __future__ import annotations

import pytest

from rlvr.types import Completion, Problem
from rlvr.verifiers import VERIFIERS, Compose, make
from rlvr.verifiers.format import FormatVerifier
from rlvr.verifiers.math_verifier import MathVerifier
from rlvr.verifiers.overlong import OverlongPenalty, overlong_penalty

PROBLEM = Problem("p", "q", answer="7")


def reference_penalty(length: int, l_max: int, l_cache: int) -> float:
    """DAPO (Yu et al., 2025), eq. 13, written as in the paper."""
    if length <= l_max - l_cache:
        return 0.0
    if l_max - l_cache < length <= l_max:
        return ((l_max - l_cache) - length) / l_cache
    return -1.0


@pytest.mark.parametrize("length,expected", [(0, 0.0), (15, 0.0), (16, 0.0), (17, -0.25), (18, -0.5),
                                             (19, -0.75), (20, -1.0), (21, -1.0), (1000, -1.0)])
def test_penalty_at_boundaries(length, expected):
    assert overlong_penalty(length, 20, 4) == expected == reference_penalty(length, 20, 4)
    verdict = OverlongPenalty(max_length=20, cache_length=4)(PROBLEM, Completion("x", token_ids=[1] * length))
    assert verdict.reward == expected and verdict.correct and not verdict.mask and verdict.error is None


def test_penalty_matches_reference_for_dapo_defaults():
    for length in [0, 16383, 16384, 16385, 18432, 20479, 20480, 20481, 30000]:
        assert overlong_penalty(length, 20480, 4096) == pytest.approx(reference_penalty(length, 20480, 4096))
    assert overlong_penalty(21, 20, 0) == -1.0 and overlong_penalty(20, 20, 0) == 0.0  # hard cut-off


def test_mask_truncated_instead_of_penalty():
    verifier = OverlongPenalty(max_length=20, cache_length=4, mask_truncated=True)
    cut = verifier(PROBLEM, Completion("x", token_ids=[1] * 30, finish_reason="length"))
    assert cut.mask and cut.reward == 0.0 and cut.correct
    finished = verifier(PROBLEM, Completion("x", token_ids=[1] * 30, finish_reason="stop"))
    assert not finished.mask and finished.reward == 0.0


class SpaceTokenizer:
    def encode(self, text):
        return text.split()


class SpecialTokenizer:
    """Adds a BOS token unless told not to, like Hugging Face tokenizers."""

    def encode(self, text, add_special_tokens=True):
        return ([0] if add_special_tokens else []) + [1] * len(text.split())


def test_token_counts_from_ids_or_tokenizer():
    text = " ".join(["w"] * 18)
    assert OverlongPenalty(max_length=20, cache_length=4, tokenizer=SpaceTokenizer())(PROBLEM, text).reward == -0.5
    assert OverlongPenalty(max_length=20, cache_length=4, tokenizer=SpecialTokenizer())(PROBLEM, text).reward == -0.5
    with_ids = Completion(text, token_ids=[1] * 5)  # token ids win over the tokenizer
    assert OverlongPenalty(max_length=20, cache_length=4, tokenizer=SpaceTokenizer())(PROBLEM, with_ids).reward == 0.0
    with pytest.raises(ValueError, match="no token_ids and no tokenizer"):
        OverlongPenalty()(PROBLEM, "plain text")


def test_tokenizer_loaded_by_path(tmp_path):
    tokenizers = pytest.importorskip("tokenizers")
    from transformers import PreTrainedTokenizerFast

    vocab = {"[UNK]": 0, "a": 1, "b": 2}
    backend = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]").save_pretrained(tmp_path)
    verifier = OverlongPenalty(max_length=4, cache_length=2, tokenizer=str(tmp_path))
    assert verifier.length(Completion("a b a")) == 3
    assert verifier(PROBLEM, "a b a").reward == -0.5


def test_overlong_argument_checks():
    with pytest.raises(ValueError, match="cache_length must be in"):
        OverlongPenalty(max_length=10, cache_length=11)
    with pytest.raises(ValueError, match="max_length must be > 0"):
        OverlongPenalty(max_length=0)
    with pytest.raises(TypeError, match="tokenizer must be"):
        OverlongPenalty(tokenizer=42)


GOOD = "<think>7 is prime</think>\n<answer>7</answer>"


@pytest.mark.parametrize("text,reward", [
    (GOOD, 1.0),
    ("<think>7 is prime</think> <answer>7</answer> and more", 0.75),
    ("<think>7 is prime</think>", 0.5),
    ("7 is prime</think><answer>7</answer>", 0.5),
    ("<think>unfinished thoughts <answer>7</answer>", 0.25),
    ("just 7", 0.0),
])
def test_format_partial_credit(text, reward):
    verdict = FormatVerifier()(PROBLEM, text)
    assert verdict.reward == reward
    assert verdict.correct is (reward == 1.0)
    assert (verdict.error is None) is (reward == 1.0)


def test_format_all_or_nothing_free_answer_and_regexes():
    assert FormatVerifier(partial_credit=False)(PROBLEM, "<think>x</think>").reward == 0.0
    free = FormatVerifier(answer_tag=None)
    assert free(PROBLEM, "<think>x</think> The answer is 7").reward == 1.0
    assert free(PROBLEM, "<think>x</think>  ").reward == pytest.approx(2 / 3)
    regexes = FormatVerifier(patterns=(r"\\boxed\{", r"^Step 1"))
    assert regexes(PROBLEM, "Step 1: ... so \\boxed{7}").reward == 1.0
    half = regexes(PROBLEM, "so \\boxed{7}")
    assert half.reward == 0.5 and "Step 1" in half.error
    with pytest.raises(ValueError, match="invalid regex"):
        FormatVerifier(patterns=("(",))


def test_compose_math_and_overlong_keeps_parts():
    composed = Compose([MathVerifier(), OverlongPenalty(max_length=20, cache_length=4)], names=["math", "overlong"])
    right_long = composed(PROBLEM, Completion("\\boxed{7}", token_ids=[1] * 18))
    assert right_long.parts == {"math": 1.0, "overlong": -0.5}
    assert right_long.reward == 0.5 and right_long.correct and right_long.extracted == "7"
    wrong_short = composed(PROBLEM, Completion("\\boxed{8}", token_ids=[1] * 3))
    assert wrong_short.parts == {"math": 0.0, "overlong": 0.0} and not wrong_short.correct
    assert wrong_short.error == "math: not equivalent"


def test_registered_names_compose_from_a_string():
    assert {"math", "overlong", "format"} <= set(VERIFIERS.names())
    composed = make("math+format")
    verdict = composed(PROBLEM, "<think>hmm</think><answer>\\boxed{7}</answer>")
    assert verdict.parts == {"math": 1.0, "format": 1.0} and verdict.reward == 2.0
