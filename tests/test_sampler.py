"""The problem samplers: uniform draws are the source's own (a run without a curriculum is unchanged), the frontier
sampler's pass rates and draw probabilities follow its definition, it moves draws towards the levels in between,
and a run with it resumes exactly, synchronously and asynchronously."""

import numpy as np
import pytest

from rlvr.envs.tasks.arithmetic import Arithmetic
from rlvr.envs.tasks.files import MathFile
from rlvr.sampler import FrontierSampler, UniformSampler, make_sampler
from rlvr.types import Completion, Group, Problem, Verdict
from test_trainer import easy_config, unbroken_and_resumed


def group(problem: Problem, right: int, of: int = 4) -> Group:
    return Group(problem, [Completion("x")] * of, [Verdict(float(i < right), i < right) for i in range(of)])


def test_uniform_draws_are_the_sources_own():
    source = Arithmetic([1, 2, 3])
    a, b = np.random.default_rng(3), np.random.default_rng(3)
    assert UniformSampler(source).draw(5, a) == [source.sample(b) for _ in range(5)]


def test_frontier_pass_rates_are_moving_averages_and_weights_peak_in_between():
    source = Arithmetic([1, 2, 3])
    sampler = FrontierSampler(source, decay=0.5, floor=0.1, prior=0.5)
    rng = np.random.default_rng(0)
    easy, mid, hard = (source.sample_level(rng, level) for level in (1, 2, 3))
    sampler.update([group(easy, 4), group(easy, 4), group(mid, 2), group(hard, 0)])
    np.testing.assert_allclose(sampler.pass_rate, [0.875, 0.5, 0.25])  # 0.5 -> 0.75 -> 0.875; 0.5; 0.25
    w = 0.1 + 4 * sampler.pass_rate * (1 - sampler.pass_rate)
    np.testing.assert_allclose(sampler.weights(), w / w.sum())
    assert sampler.weights().argmax() == 1
    counts = np.bincount([p.meta["level"] for p in sampler.draw(4000, rng)], minlength=4)[1:] / 4000
    np.testing.assert_allclose(counts, sampler.weights(), atol=0.03)
    assert sampler.metrics()["sampler/pass_rate_1"] == pytest.approx(0.875)


def test_frontier_state_round_trips_and_refuses_other_buckets():
    sampler = FrontierSampler(Arithmetic([1, 2]))
    sampler.update([group(Arithmetic([1, 2]).sample_level(np.random.default_rng(0), 2), 3)])
    fresh = FrontierSampler(Arithmetic([1, 2]))
    fresh.load_state_dict(sampler.state_dict())
    np.testing.assert_array_equal(fresh.pass_rate, sampler.pass_rate)
    with pytest.raises(ValueError, match="other buckets"):
        FrontierSampler(Arithmetic([1, 3])).load_state_dict(sampler.state_dict())


def test_frontier_by_problem_on_a_finite_source(data_dir):
    source = MathFile(data_dir / "gsm8k_sample.jsonl", name="gsm8k")
    sampler = make_sampler("frontier", source, by="problem")
    solved = source.problems[0]
    for _ in range(20):
        sampler.update([group(solved, 4)])
    draws = sampler.draw(2000, np.random.default_rng(1))
    assert sum(p.id == solved.id for p in draws) < 2000 / len(source) / 3  # a solved problem is rarely posed
    with pytest.raises(ValueError, match="by='problem'"):
        FrontierSampler(source)  # no levels
    with pytest.raises(ValueError, match="sampler must be one of"):
        make_sampler("hardest", source)


def test_a_run_with_the_frontier_sampler_logs_its_state_and_moves_off_solved_levels(tmp_path):
    from rlvr.trainer import Trainer

    cfg = easy_config(tmp_path, env="rlvr/Arithmetic-v0", env_kwargs={"level": [1, 7]}, sampler="frontier",
                      sampler_kwargs={"decay": 0.5}, steps=3, max_new_tokens=4, algo="grpo")
    with Trainer(cfg) as trainer:
        records = trainer.train()
        rates = trainer.collector.sampler.pass_rate
    assert {"sampler/pass_rate_1", "sampler/prob_7"} <= set(records[-1])
    assert rates[1] < 0.2  # an untrained model never solves level 7: its pass rate falls from the prior


@pytest.mark.parametrize("k", [0, 1])
def test_a_run_with_the_frontier_sampler_resumes_exactly(tmp_path, k):
    unbroken, resumed = unbroken_and_resumed(tmp_path, env="rlvr/Arithmetic-v0", env_kwargs={"level": [1, 2, 3]},
                                             max_new_tokens=3, sampler="frontier", async_rollouts=k)
    assert resumed == unbroken and "sampler/prob_3" in resumed[-1]
