import json

import numpy as np
import pytest

import rlvr
from rlvr.envs.tasks.arithmetic import LEVELS, Arithmetic
from rlvr.envs.tasks.countdown import Countdown
from rlvr.envs.tasks.files import MATH_FIELDS, CodeFile, DatasetError, MathFields, MathFile
from rlvr.safe_eval import evaluate, literals
from rlvr.verifiers import make as make_verifier


@pytest.mark.parametrize("level", sorted(LEVELS))
def test_arithmetic_answers_are_exact_and_ids_rebuild(level):
    src = Arithmetic(level)
    rng = np.random.default_rng(level)
    for _ in range(50):
        p = src.sample(rng)
        assert evaluate(p.meta["expression"]) == int(p.answer)
        assert src.get(p.id) == p


def test_arithmetic_is_seeded_and_splits_are_disjoint():
    first = [p.id for _, p in zip(range(20), Arithmetic(2, seed=7))]
    again = [p.id for _, p in zip(range(20), Arithmetic(2, seed=7))]
    other = [p.id for _, p in zip(range(20), Arithmetic(2, seed=8))]
    assert first == again and first != other
    train = {p.prompt for _, p in zip(range(3000), Arithmetic(2, split="train"))}
    test = {p.prompt for _, p in zip(range(300), Arithmetic(2, split="test", seed=1))}
    assert train and test and not train & test


def test_arithmetic_levels_grow_harder():
    rng = np.random.default_rng(0)
    mean_abs = [np.mean([abs(int(Arithmetic(lv).sample(rng).answer)) for _ in range(200)]) for lv in (1, 6)]
    assert mean_abs[0] < 10 < mean_abs[1]
    with pytest.raises(ValueError, match="level must be one of"):
        Arithmetic(9)


def test_countdown_problems_are_solvable_by_their_solution():
    src, verifier = Countdown(num_numbers=4), make_verifier("countdown")
    rng = np.random.default_rng(0)
    for _ in range(30):
        p = src.sample(rng)
        assert evaluate(p.meta["solution"]) == p.meta["target"] > 0
        assert sorted(literals(p.meta["solution"])) == sorted(p.meta["numbers"])
        assert verifier(p, f"<answer>{p.meta['solution']}</answer>").correct


@pytest.mark.parametrize("text, error", [
    ("<answer>__import__('os').system('echo hi')</answer>", "invalid expression"),
    ("<answer>2 ** 100</answer>", "invalid expression"),
    ("<answer>(1/0)</answer>", "invalid expression"),
    ("no expression here\n", "invalid expression"),
    ("", "no expression found"),
])
def test_countdown_verifier_rejects_unsafe_or_invalid_text(text, error):
    p = Countdown().sample(np.random.default_rng(1))
    v = make_verifier("countdown")(p, text)
    assert v.reward == 0.0 and not v.correct and error in v.error


def test_countdown_verifier_checks_numbers_and_target():
    p = Countdown().get("countdown-3-25-5")
    a, b, c = p.meta["numbers"]
    v = make_verifier("countdown")
    assert "not given" in v(p, f"<answer>{a} + {b} + {c} + 1000</answer>").error
    assert "unused" in v(p, f"<answer>{a} + {b}</answer>").error
    wrong = v(p, f"<answer>{a} + {b} + {c} + 0</answer>") if 0 in p.meta["numbers"] else None
    assert wrong is None or not wrong.correct
    if a + b + c != p.meta["target"]:
        assert "evaluates to" in v(p, f"<answer>{a} + {b} + {c}</answer>").error
    assert make_verifier("countdown", use_all=False)(p, f"<answer>{p.meta['solution']}</answer>").correct


def test_gsm8k_rows_load_with_gold_answers(data_dir):
    src = MathFile(data_dir / "gsm8k_sample.jsonl", name="gsm8k")
    assert len(src) == 50
    first = src.get("gsm8k-1")
    assert first.answer == "72" and "Natalia" in first.prompt
    assert all(p.answer and "####" not in p.answer and "," not in p.answer for p in src.problems)


def test_math_rows_take_the_last_boxed_answer(data_dir):
    src = MathFile(data_dir / "math_sample.jsonl", fields=MATH_FIELDS, name="math")
    answers = [src.get(f"math-{i}").answer for i in range(1, 7)]
    assert answers == ["\\frac{5}{6}", "4", "16", "(-2, 2)", "10", "x + 1"]
    assert src.get("math-1").meta == {"level": "Level 1", "type": "Prealgebra"}


def test_malformed_rows_name_file_line_and_field(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"question": "q", "answer": "#### 1"}) + "\n\n" + json.dumps({"question": "q2"}) + "\n")
    with pytest.raises(DatasetError, match=r"bad.jsonl:3: missing field 'answer' \(row has: question\)"):
        MathFile(bad)
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"question": "q", "answer": "#### 1"}\n{not json\n')
    with pytest.raises(DatasetError, match=r"broken.jsonl:2: invalid JSON"):
        MathFile(broken)
    no_marker = tmp_path / "nomarker.jsonl"
    no_marker.write_text(json.dumps({"question": "q", "answer": "42"}) + "\n")
    with pytest.raises(DatasetError, match=r"nomarker.jsonl:1: field 'answer' has no gsm8k answer"):
        MathFile(no_marker)
    code = tmp_path / "code.jsonl"
    code.write_text(json.dumps({"task_id": "t/0", "prompt": "def f():\n", "test": "def check(c): pass"}) + "\n")
    with pytest.raises(DatasetError, match=r"code.jsonl:1: missing field 'entry_point'"):
        CodeFile(code)
    with pytest.raises(FileNotFoundError, match="data set file not found"):
        MathFile(tmp_path / "missing.jsonl")
    (tmp_path / "x.csv").write_text("question,answer\n")
    with pytest.raises(DatasetError, match="unsupported file type"):
        MathFile(tmp_path / "x.csv")


def test_parquet_and_in_memory_rows_with_custom_fields(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    rows = [{"q": "1+1?", "a": "2", "uid": "u1"}, {"q": "2+2?", "a": "4", "uid": "u2"}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "rows.parquet")
    fields = MathFields(question="q", answer="a", id="uid", answer_format="plain")
    from_file = MathFile(tmp_path / "rows.parquet", fields=fields)
    in_memory = MathFile(dataset=rows, fields=fields)
    assert [p.answer for p in from_file] == [p.answer for p in in_memory]
    assert from_file.get("u2").prompt == "2+2?"
    with pytest.raises(ValueError, match="exactly one of the two"):
        MathFile()


def test_file_heldout_split_is_stable_and_disjoint(data_dir):
    path = data_dir / "gsm8k_sample.jsonl"
    train = MathFile(path, split="train", heldout_fraction=0.2)
    test = MathFile(path, split="test", heldout_fraction=0.2)
    assert len(train) + len(test) == 50 and not {p.id for p in train} & {p.id for p in test}
    assert [p.id for p in MathFile(path, split="test", heldout_fraction=0.2)] == [p.id for p in test]


def test_countdown_prompt_format_is_configurable_and_checked():
    short = rlvr.make("rlvr/Countdown-v0", num_numbers=3, max_number=9, prompt="{numbers} -> {target}:").unwrapped
    p = short.source.get("countdown-3-9-7")
    default = Countdown(3, 9).get("countdown-3-9-7")
    assert p.meta == default.meta and p.prompt != default.prompt  # the same problem, worded differently
    assert short.format_prompt(p) == f"{p.meta['numbers']} -> {p.meta['target']}:"
    assert make_verifier("countdown")(p, p.meta["solution"]).correct
    with pytest.raises(ValueError, match="target"):
        Countdown(prompt="reach it with {numbers}")


def gsm8k_rows(n: int, start: int = 0) -> list[dict]:
    return [{"question": f"What is {i} + 1?", "answer": f"{i} + 1 = {i + 1}\n#### {i + 1}"} for i in range(start, n)]


def test_a_save_to_disk_directory_is_a_data_set(tmp_path):
    """A `Dataset` saved with save_to_disk, and a `DatasetDict` whose split `data_split` picks (the env's own
    `split` stays its train/test side)."""
    datasets = pytest.importorskip("datasets")
    datasets.Dataset.from_list(gsm8k_rows(6)).save_to_disk(tmp_path / "one")
    env = rlvr.make("rlvr/GSM8K-v0", path=str(tmp_path / "one")).unwrapped
    assert len(env.source) == 6 and env.source.get("gsm8k-3").answer == "3"
    splits = datasets.DatasetDict({"train": datasets.Dataset.from_list(gsm8k_rows(4)),
                                   "test": datasets.Dataset.from_list(gsm8k_rows(7, start=4))})
    splits.save_to_disk(tmp_path / "two")
    test = MathFile(tmp_path / "two", data_split="test", name="gsm8k")
    assert [p.answer for p in test] and sorted(p.answer for p in test) == ["5", "6", "7"]
    with pytest.raises(DatasetError, match="has the splits train, test: choose one with data_split="):
        MathFile(tmp_path / "two")
    with pytest.raises(DatasetError, match="has no split 'validation'"):
        MathFile(tmp_path / "two", data_split="validation")


def test_a_hub_repository_layout_loads_through_load_dataset_with_config_and_split(tmp_path, monkeypatch):
    """What `path=openai/gsm8k config=main data_split=test` does, on a repository laid out as on the hub (README
    configs, one Parquet file per config and split) read from a local directory: no network."""
    datasets = pytest.importorskip("datasets")
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "cache")  # nothing from earlier runs
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    repo = tmp_path / "gsm8k"
    for config, offset in (("main", 0), ("socratic", 100)):
        (repo / config).mkdir(parents=True)
        for split, rows in (("train", gsm8k_rows(offset + 20, offset)), ("test", gsm8k_rows(offset + 3, offset))):
            pq.write_table(pa.Table.from_pylist(rows), repo / config / f"{split}-00000-of-00001.parquet")
    (repo / "README.md").write_text("---\nconfigs:\n" + "".join(
        f"- config_name: {c}\n  data_files:\n  - split: train\n    path: {c}/train-*\n"
        f"  - split: test\n    path: {c}/test-*\n" for c in ("main", "socratic")) + "---\n")
    env = rlvr.make("rlvr/GSM8K-v0", path=str(repo), config="socratic", data_split="test").unwrapped
    assert sorted(p.answer for p in env.source) == ["101", "102", "103"]
    sliced = MathFile(repo, config="main", data_split="train[:2]")
    assert [p.answer for p in sliced] == ["1", "2"]
    sides = [rlvr.make("rlvr/GSM8K-v0", path=str(repo), config="main", data_split="train", split=side,
                       heldout_fraction=0.4).unwrapped.source for side in ("train", "test")]
    ids = [{p.id for p in side} for side in sides]  # the env's own split carves its held-out side from the rows read
    assert not ids[0] & ids[1] and len(ids[0] | ids[1]) == 20 and all(ids)


def test_a_missing_data_file_is_never_looked_up_on_the_hub(tmp_path):
    with pytest.raises(FileNotFoundError, match="data set file not found"):
        MathFile(tmp_path / "typo.jsonl")
