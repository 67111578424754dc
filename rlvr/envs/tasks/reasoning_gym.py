"""reasoning-gym's procedural data sets as rlvr tasks (optional extra `rlvr[reasoning-gym]`): any of its generators,
configured with its own config fields (or its curriculum's levels), seeded, with a held-out split disjoint by
content, and scored by the data set's own `score_answer` on the text between the completion's last
<answer></answer> tags (the format its system prompts ask for). Several of its scorers `eval` the answer (directly,
or through sympy's `parse_expr`): they run under `rlvr.verifiers.guarded_eval.no_code_execution`, so an answer that
is code is refused with a named verdict instead of running on the host."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, is_dataclass
from typing import Any, ClassVar

from rlvr.envs.tasks.base import ProceduralSource, Split
from rlvr.types import Completion, Problem, Verdict
from rlvr.verifiers.guarded_eval import no_code_execution

SIZE = 10_000  # items per generator (some of reasoning-gym's generators build every item up front)


def require_reasoning_gym() -> Any:
    try:
        import reasoning_gym
    except ImportError as exc:
        raise ImportError("reasoning-gym tasks need the extra: pip install 'rlvr[reasoning-gym]'") from exc
    return reasoning_gym


def task_names() -> list[str]:
    """Every data set reasoning-gym registers."""
    return sorted(require_reasoning_gym().factory.DATASETS)


def describe(task: str) -> str:
    """The first line of a data set's docstring."""
    dataset_cls, _ = require_reasoning_gym().factory.DATASETS[task]
    return ((dataset_cls.__doc__ or task).strip().splitlines() or [task])[0]


def check_task(task: str) -> None:
    if task not in require_reasoning_gym().factory.DATASETS:
        from rlvr.registry import suggest

        raise ValueError(f"reasoning-gym has no data set {task!r}." + suggest(task, task_names()))


def curriculum_at(task: str, levels: dict[str, int] | int | None) -> Any:
    """The data set's reasoning-gym curriculum with its attributes at `levels` (an int: every attribute; a dict:
    the attributes it names), or None when the data set has none (then `levels` must be None)."""
    rg = require_reasoning_gym()
    if not rg.factory.has_curriculum(task):
        if levels is not None:
            raise ValueError(f"reasoning-gym's {task!r} has no curriculum: set its config fields instead")
        return None
    curriculum = rg.factory.create_curriculum(task)
    unknown = sorted(set(levels) - set(curriculum.attributes)) if isinstance(levels, dict) else []
    if unknown:
        raise ValueError(f"{task}: no curriculum attribute(s) {unknown}; it has {sorted(curriculum.attributes)}")
    for name in curriculum.attributes:
        level = levels if isinstance(levels, int) else (levels or {}).get(name)
        if level is not None:
            curriculum.set_attr_level(name, level)
    return curriculum


def task_config(task: str, config: dict[str, Any], curriculum: Any = None) -> dict[str, Any]:
    """The data set's config fields: the curriculum's current configuration when one is given, then `config`
    over it. A field the data set does not take is a ValueError naming the fields it takes."""
    _, config_cls = require_reasoning_gym().factory.DATASETS[task]
    known = set(config_cls.__dataclass_fields__) - {"seed", "size"} if is_dataclass(config_cls) else set()
    unknown = sorted(set(config) - known)
    if unknown:
        raise ValueError(f"{task}: unknown config field(s) {unknown}; it takes {sorted(known)}")
    base = {} if curriculum is None else {k: v for k, v in asdict(curriculum.generate_configuration()).items()
                                           if k in known}
    if task == "composite" and "datasets" in config:  # its parts as dicts (name, weight, config) from a config file
        from reasoning_gym.composite import DatasetSpec

        config = {**config, "datasets": [DatasetSpec(**d) if isinstance(d, dict) else d for d in config["datasets"]]}
    return {**base, **config}


_DATASETS: dict[tuple[str, str, int, int], Any] = {}


def dataset(task: str, config: dict[str, Any], seed: int = 0, size: int = SIZE) -> Any:
    """The generator of `size` items, built once per process (a verifier worker builds its own)."""
    key = (task, json.dumps(config, sort_keys=True, default=repr), seed, size)
    if key not in _DATASETS:
        _DATASETS[key] = require_reasoning_gym().create_dataset(task, seed=seed, size=size, **config)
    return _DATASETS[key]


class ReasoningGym(ProceduralSource):
    """Problems of one reasoning-gym data set. Problem `rg-{task}-{i}` is the generator's item i of `size` (seeded), its
    gold answer the item's, its entry (question, answer, metadata) in `meta["entry"]` for the scorer; its default
    verifier is that data set's own scorer. `curriculum` is the data set's reasoning-gym curriculum at `levels`
    (None if it has none), `config` the generator's config fields."""

    def __init__(self, task: str, *, levels: dict[str, int] | int | None = None, size: int = SIZE,
                 split: Split = "train", heldout_fraction: float = 0.1, seed: int = 0, **config: Any) -> None:
        super().__init__(split=split, heldout_fraction=heldout_fraction, seed=seed)
        check_task(task)
        self.task, self.name = task, f"reasoning-gym/{task}"
        self.curriculum = curriculum_at(task, levels)
        self.config = task_config(task, config, self.curriculum if levels is not None else None)
        self.size = size
        self.dataset = dataset(task, self.config, size=size)  # one generator for both splits: split by content
        self.default_verifier = ReasoningGymVerifier(task, self.config, size)  # the data set's own scorer

    def generate(self, key: int) -> Problem:
        index = key % self.size
        entry = self.dataset[index]
        answer = entry.get("answer")
        return Problem(id=f"rg-{self.task}-{index}", prompt=entry["question"],
                       answer=None if answer is None else str(answer), meta={"entry": entry})

    def key_of(self, problem_id: str) -> int:
        prefix = f"rg-{self.task}-"
        if not problem_id.startswith(prefix):
            raise ValueError(problem_id)
        return int(problem_id[len(prefix):])


@dataclass
class ReasoningGymVerifier:
    """Reward: the data set's `score_answer(answer, entry)` in [0, 1] (some give partial credit), on the text of
    the completion's last <answer></answer>; correct when it is 1. Picklable: a process pool or a Ray actor
    builds the generator itself from `task` and `config`."""

    task: str
    config: dict[str, Any] = field(default_factory=dict)
    size: int = SIZE
    name: ClassVar[str] = "reasoning_gym"

    def __call__(self, problem: Problem, completion: Completion | str) -> Verdict:
        entry = problem.meta.get("entry")
        if entry is None:
            raise ValueError(f"problem {problem.id!r} has no reasoning-gym entry in meta['entry']")
        rg = require_reasoning_gym()
        answer = rg.utils.extract_answer(Completion.coerce(completion).text)
        scorer = dataset(self.task, self.config, size=self.size)
        try:
            with no_code_execution() as refused:  # some scorers eval the answer: code is refused, never run
                score = float(scorer.score_answer(answer, entry))
        except Exception as exc:  # a scorer that chokes on a hostile answer gives 0, with the reason
            return Verdict(0.0, False, extracted=answer, error=f"scorer error: {type(exc).__name__}: {exc}"[:300])
        if refused:
            return Verdict(0.0, False, extracted=answer, error=f"refused: the answer is code ({refused[0]})"[:300])
        correct = score >= 1.0
        error = None if correct else ("no answer found (no <answer></answer>)" if answer is None else
                                      f"not equivalent (score {score:g})")
        return Verdict(score, correct, extracted=answer, error=error)
