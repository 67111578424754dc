"""File-backed task sources: math sets (GSM8K `#### 42` rows, MATH `\\boxed{}` solutions, or plain answers) and
HumanEval-format code sets, from JSONL, JSON, Parquet, a Hugging Face data set (a hub id read through
`datasets.load_dataset` with its config, split and revision, or a `save_to_disk` directory) or an in-memory
`datasets.Dataset`. A malformed row raises a `DatasetError` naming the file, the line and the missing field."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from rlvr.envs.tasks.base import ListSource, Split
from rlvr.types import Problem
from rlvr.verifiers.extract import last_boxed

AnswerFormat = Literal["gsm8k", "boxed", "plain"]


class DatasetError(ValueError):
    """A data set row that cannot become a Problem; the message names file, line and field."""


Row = tuple[str, int, dict[str, Any]]  # (source name, 1-based line or row number, row)


def read_rows(path: str | Path) -> Iterator[Row]:
    """Rows of a .jsonl, .json (a list of objects) or .parquet file, each with its line/row number."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"data set file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".gz" and path.name.lower().endswith(".jsonl.gz"):
        suffix = ".jsonl.gz"
    if suffix in (".jsonl", ".jsonl.gz"):
        opener = gzip.open if suffix == ".jsonl.gz" else open
        with opener(path, "rt", encoding="utf-8") as f:
            for line_no, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DatasetError(f"{path}:{line_no}: invalid JSON ({exc.msg})") from exc
                yield str(path), line_no, _as_dict(row, path, line_no)
    elif suffix == ".json":
        rows = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(rows, list):
            raise DatasetError(f"{path}: expected a JSON list of objects, got {type(rows).__name__}")
        for i, row in enumerate(rows, 1):
            yield str(path), i, _as_dict(row, path, i)
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        for i, row in enumerate(pq.read_table(path).to_pylist(), 1):
            yield str(path), i, row
    else:
        raise DatasetError(f"{path}: unsupported file type {suffix!r} (use .jsonl, .jsonl.gz, .json or .parquet)")


def dataset_rows(dataset: Iterable[dict[str, Any]], name: str = "dataset") -> Iterator[Row]:
    """Rows of an in-memory data set (a `datasets.Dataset` or any iterable of dicts), numbered from 1."""
    for i, row in enumerate(dataset, 1):
        yield name, i, dict(row)


def _as_dict(row: Any, path: Path, line_no: int) -> dict[str, Any]:
    if not isinstance(row, dict):
        raise DatasetError(f"{path}:{line_no}: expected a JSON object, got {type(row).__name__}")
    return row


def field(row: Row, name: str, kind: type = str) -> Any:
    """`row[name]`, or a DatasetError naming the file, line and missing or mistyped field."""
    source, line_no, data = row
    if name not in data or data[name] is None:
        raise DatasetError(f"{source}:{line_no}: missing field {name!r} (row has: {', '.join(sorted(data))})")
    value = data[name]
    if not isinstance(value, kind):
        raise DatasetError(f"{source}:{line_no}: field {name!r} should be {kind.__name__}, "
                           f"got {type(value).__name__}")
    return value


def gold_answer(raw: str, answer_format: AnswerFormat) -> str | None:
    """The gold answer inside a data set's answer/solution field."""
    if answer_format == "gsm8k":
        return raw.rsplit("####", 1)[1].strip().replace(",", "") if "####" in raw else None
    if answer_format == "boxed":
        return last_boxed(raw)
    return raw.strip() or None


@dataclass
class MathFields:
    """Which row fields hold what; the defaults read GSM8K rows."""

    question: str = "question"
    answer: str = "answer"
    id: str | None = None
    answer_format: AnswerFormat = "gsm8k"


GSM8K_FIELDS = MathFields()
MATH_FIELDS = MathFields(question="problem", answer="solution", answer_format="boxed")


def math_problems(rows: Iterable[Row], fields: MathFields, prefix: str) -> list[Problem]:
    problems = []
    for row in rows:
        source, line_no, data = row
        question, raw = field(row, fields.question), str(field(row, fields.answer, object))
        answer = gold_answer(raw, fields.answer_format)
        if answer is None:
            raise DatasetError(f"{source}:{line_no}: field {fields.answer!r} has no {fields.answer_format} "
                               f"answer ({'#### x' if fields.answer_format == 'gsm8k' else 'boxed{x}'} expected)")
        pid = str(field(row, fields.id, object)) if fields.id else f"{prefix}-{line_no}"
        meta = {k: v for k, v in data.items() if k not in (fields.question, fields.answer)}
        problems.append(Problem(id=pid, prompt=question, answer=answer, meta=meta))
    return problems


def code_problems(rows: Iterable[Row], prefix: str) -> list[Problem]:
    """HumanEval-format rows: `task_id`, `prompt`, `entry_point`, `test` (defines `check(candidate)`)."""
    problems = []
    for row in rows:
        prompt, test, entry_point = field(row, "prompt"), field(row, "test"), field(row, "entry_point")
        data = row[2]
        pid = str(data.get("task_id") or f"{prefix}-{row[1]}")
        tests = {"kind": "humaneval", "test": test, "entry_point": entry_point, "prompt": prompt}
        meta = {"canonical_solution": data["canonical_solution"]} if "canonical_solution" in data else {}
        problems.append(Problem(id=pid, prompt=prompt, tests=tests, meta=meta))
    return problems


@dataclass(frozen=True)
class HubData:
    """Which part of a Hugging Face data set to read: its `config` (subset) name, `data_split` (a split or a slice
    such as "train[:1000]"; named so because an env's `split` is its train/test side) and `revision` (a commit,
    branch or tag of a hub repository)."""

    config: str | None = None
    data_split: str | None = None
    revision: str | None = None


def hub_rows(path: str | Path, hub: HubData) -> Iterator[Row]:
    """Rows of a Hugging Face data set: a directory written by `save_to_disk`, or anything `datasets.load_dataset`
    reads (a hub id such as openai/gsm8k, or a local directory laid out like a hub repository)."""
    try:
        import datasets
    except ImportError as exc:
        raise ImportError(f"reading {path} needs the datasets library: pip install 'rlvr[data]'") from exc
    saved = Path(path) / "state.json", Path(path) / "dataset_dict.json"
    if any(p.exists() for p in saved):
        data = datasets.load_from_disk(str(path))
    else:
        data = datasets.load_dataset(str(path), hub.config, split=hub.data_split, revision=hub.revision)
    if isinstance(data, datasets.DatasetDict):
        if hub.data_split is None and len(data) != 1:
            raise DatasetError(f"{path} has the splits {', '.join(data)}: choose one with data_split=")
        if hub.data_split is not None and hub.data_split not in data:
            raise DatasetError(f"{path} has no split {hub.data_split!r} (it has {', '.join(data)})")
        data = data[hub.data_split or next(iter(data))]
    return dataset_rows(data, name=f"{path}[{hub.data_split}]" if hub.data_split else str(path))


def _rows(path: str | Path | None, dataset: Iterable[dict[str, Any]] | None, env_name: str,
          hub: HubData) -> Iterator[Row]:
    """The rows of `path` (a data file, a Hugging Face data set's directory or hub id) or of `dataset`."""
    if (path is None) == (dataset is None):
        raise ValueError(f"{env_name} is file-backed: pass its data with the keyword `path=` (a .jsonl, .json or "
                         f".parquet file, a save_to_disk directory or a hub id) or `dataset=` (a datasets.Dataset), "
                         f"exactly one of the two")
    if dataset is not None:
        return dataset_rows(dataset, name=env_name)
    local, suffixes = Path(path), (".jsonl", ".gz", ".json", ".parquet")
    if local.is_file() or (local.suffix.lower() in suffixes and not local.exists()):
        return read_rows(local)  # a data file (a missing one is a FileNotFoundError, never a hub lookup)
    return hub_rows(path, hub)


class MathFile(ListSource):
    """A math data set from a file or a `datasets.Dataset`, GSM8K rows by default (`fields=MATH_FIELDS` for
    MATH rows; any field names through `MathFields`)."""

    default_verifier = "math"

    def __init__(self, path: str | Path | None = None, *, dataset: Iterable[dict[str, Any]] | None = None,
                 fields: MathFields = GSM8K_FIELDS, name: str = "math-file", split: Split = "all",
                 heldout_fraction: float = 0.0, seed: int = 0, config: str | None = None,
                 data_split: str | None = None, revision: str | None = None) -> None:
        problems = math_problems(_rows(path, dataset, name, HubData(config, data_split, revision)), fields,
                                 prefix=name)
        super().__init__(problems, name=name, split=split, heldout_fraction=heldout_fraction, seed=seed)


class CodeFile(ListSource):
    """A HumanEval-format code set from a file or a `datasets.Dataset`."""

    default_verifier = "code"

    def __init__(self, path: str | Path | None = None, *, dataset: Iterable[dict[str, Any]] | None = None,
                 name: str = "code-file", split: Split = "all", heldout_fraction: float = 0.0, seed: int = 0,
                 config: str | None = None, data_split: str | None = None, revision: str | None = None) -> None:
        problems = code_problems(_rows(path, dataset, name, HubData(config, data_split, revision)), prefix=name)
        super().__init__(problems, name=name, split=split, heldout_fraction=heldout_fraction, seed=seed)
