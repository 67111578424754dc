"""The rollout side of a run: problems in, scored groups out, through the run's envs and engine exactly as a user
would step them (single-turn: B problems x G completions of one `GroupVectorEnv`; multi-turn: one env instance
per episode, played turn by turn by `rlvr.rollout.episodes`)."""

from __future__ import annotations

import math
import sys
import time
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

import rlvr
from rlvr.algorithms.base import Algorithm
from rlvr.chat import ChatRenderer
from rlvr.config import TrainConfig
from rlvr.envs.multiturn import MultiTurnEnv
from rlvr.envs.prompt_env import PromptEnv
from rlvr.envs.vector import GroupVectorEnv
from rlvr.evaluation import mean_and_se, sampled_metrics
from rlvr.rollout.base import Engine
from rlvr.rollout.episodes import Episode, run_episodes
from rlvr.sampler import make_sampler
from rlvr.sampling import Sampling
from rlvr.types import Group, Message, Problem
from rlvr.verifiers.base import Executor


def make_env(cfg: TrainConfig, split: str) -> PromptEnv | MultiTurnEnv:
    """The run's env on `split`, unwrapped."""
    return rlvr.make(cfg.env, **{**cfg.env_kwargs, "split": split}).unwrapped


def run_sampling(cfg: TrainConfig) -> Sampling:
    """The run's sampling distribution, which the engine samples from and the learner trains under."""
    return Sampling(cfg.max_new_tokens, cfg.temperature, cfg.top_p, cfg.top_k, tuple(cfg.stop))


def uses_chat(cfg: TrainConfig, tokenizer: PreTrainedTokenizerBase) -> bool:
    """Whether prompts are rendered with the tokenizer's chat template (which writes the special tokens itself)."""
    return cfg.chat_template and getattr(tokenizer, "chat_template", None) is not None


class Collector:
    """Rolls out the run's training batches (`collect`) and held-out episodes (`rollout`, `evaluate`) with one
    engine; draws every training problem from `data_rng`, the run's seeded data stream. `stop_ids` end a model's
    turn (multi-turn envs). Each training completion records `policy_version`, the weights it was sampled with."""

    def __init__(self, cfg: TrainConfig, engine: Engine | None, tokenizer: PreTrainedTokenizerBase,
                 executor: Executor, algo: Algorithm, stop_ids: set[int], data_rng: np.random.Generator,
                 envs: tuple[PromptEnv | MultiTurnEnv, PromptEnv | MultiTurnEnv] | None = None) -> None:
        self.env, self.eval_env = envs or (make_env(cfg, cfg.train_split), make_env(cfg, cfg.eval_split))
        self.cfg, self.engine, self.tokenizer, self.executor, self.algo = cfg, engine, tokenizer, executor, algo
        self.sampling, self.use_chat, self.data_rng = run_sampling(cfg), uses_chat(cfg, tokenizer), data_rng
        self.policy_version = 0
        env = self.env
        self.multi_turn = isinstance(env, MultiTurnEnv)
        self.task: PromptEnv = env.task if self.multi_turn else env
        self.renderer = ChatRenderer(tokenizer, stop_ids, tools=env.tools) if self.multi_turn else None
        eval_task = self.eval_env.task if self.multi_turn else self.eval_env
        self.eval_set = eval_task.source.distinct(cfg.eval_problems)  # the held-out problems `evaluate` poses
        # which problems a batch poses (uniform, or a curriculum at the learning frontier), drawn from the data stream
        self.sampler = make_sampler(cfg.sampler, self.task.source, **cfg.sampler_kwargs)
        # single-turn: the vector env a user would step, drawing from the run's data stream
        self.venv = None if self.multi_turn else GroupVectorEnv(env, cfg.num_prompts, cfg.group_size, executor)
        if self.venv is not None:
            self.venv.np_random = data_rng
        self.episode_envs: dict[str, list[MultiTurnEnv]] = {}  # multi-turn: one env instance per episode

    def render_prompt(self, observation: str, messages: list[Message]) -> str:
        """The engine's prompt for an episode's first observation: the chat template over its messages when the
        run uses one, else the observation text itself."""
        if self.use_chat:
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return observation

    def prompt_text(self, problem: Problem, env: PromptEnv) -> str:
        """The prompt an episode of `problem` in `env` starts from (what `render_prompt` made of its reset)."""
        return self.render_prompt(env.format_prompt(problem), env.messages(problem))

    def first_prompt(self, problem: Problem) -> str | list[int]:
        """What the learner puts before an episode's completion: the single-turn prompt text, or a multi-turn
        episode's first-prompt ids (as `Episode.start` renders them)."""
        if self.multi_turn:
            return self.renderer.prompt(self.task.messages(problem))
        return self.prompt_text(problem, self.env)

    def episodes(self, venv: GroupVectorEnv, sampling: Sampling, options: dict[str, Any] | None = None) -> list[Group]:
        """One batch of grouped episodes, stepped as a user would: reset the vector env (B problems, `options` as
        its reset's), generate G completions per prompt with the engine, step with them, and group the result."""
        observations, info = venv.reset(options=options)
        slots = range(0, venv.num_envs, venv.group_size)  # the first slot of each problem's G
        prompts = [self.render_prompt(observations[i], info["messages"][i]) for i in slots]
        actions = [c for group in self.engine.generate(prompts, venv.group_size, sampling) for c in group]
        *_, infos = venv.step(actions)
        return venv.groups(actions, infos)

    def play(self, problems: list[Problem], n: int, sampling: Sampling,
             held_out: bool) -> tuple[list[Group], list[Episode]]:
        """`n` multi-turn episodes of each of `problems`, one instance of the env (of the held-out or the training
        split) per episode, every turn of the active episodes generated in one engine call."""
        split = self.cfg.eval_split if held_out else self.cfg.train_split
        envs = self.episode_envs.setdefault(split, [])
        envs.extend(make_env(self.cfg, split) for _ in range(len(problems) * n - len(envs)))
        budget = self.cfg.max_episode_tokens or sys.maxsize
        return run_episodes(self.engine, self.renderer, envs[:len(problems) * n], problems, n, sampling, budget,
                            self.cfg.episode_return)

    def rollout(self, problems: list[Problem], n: int, sampling: Sampling, held_out: bool = True) -> list[Group]:
        """`n` episodes of each of `problems` (the held-out set, say)."""
        if self.multi_turn:
            return self.play(problems, n, sampling, held_out)[0]
        env = self.eval_env if held_out else self.env
        return self.episodes(GroupVectorEnv(env, len(problems), n, self.executor), sampling, {"problems": problems})

    def evaluate(self, problems: list[Problem], seed: int) -> dict[str, float]:
        """Greedy pass@1 on `problems`, and from n = `eval_n` (or max `eval_k`) samples of each the unbiased pass@k
        and pass^k for each k in `eval_k` and mean@n (`rlvr.evaluation`), each with `_se`, its standard error over
        problems. Whatever it draws (samples, a Ray engine's seeds) comes from torch's generators seeded with `seed`
        and then restored, so evaluating leaves the training stream as it was."""
        cuda = range(torch.cuda.device_count()) if torch.cuda.is_available() else []
        n = self.cfg.eval_n or max(self.cfg.eval_k)
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(seed)
            greedy = self.rollout(problems, 1, replace(self.sampling, temperature=0.0))
            out = dict(zip(("eval/pass@1", "eval/pass@1_se"), mean_and_se([g.verdicts[0].correct for g in greedy])))
            if n > 1:
                sampled = self.rollout(problems, n, self.sampling)
                right = [[v.correct for v in g.verdicts] for g in sampled]
                out.update({f"eval/{k}": v for k, v in sampled_metrics(right, self.cfg.eval_k).items()})
        return out

    def collect(self) -> tuple[list[Group], dict[str, float]]:
        """B groups to learn from; with dynamic sampling, draw more prompts until B are kept or rounds run out (a
        refill round draws what the rounds so far say the missing groups need, not another B)."""
        cfg, kept, drawn, rounds, tokens, start = self.cfg, [], 0, 0, 0, time.perf_counter()
        limit = self.algo.max_gen_rounds if self.algo.dynamic_sampling else 1
        while len(kept) < cfg.num_prompts and rounds < limit:
            problems = self.sampler.draw(refill_size(cfg.num_prompts, len(kept), drawn), self.data_rng)
            if self.multi_turn:
                groups, episodes = self.play(problems, cfg.group_size, self.sampling, held_out=False)
            elif len(problems) == cfg.num_prompts:
                groups, episodes = self.episodes(self.venv, self.sampling, {"problems": problems}), []
            else:  # a smaller refill round: a vector env of its size
                groups, episodes = self.rollout(problems, cfg.group_size, self.sampling, held_out=False), []
            self.sampler.update(groups)  # every group drawn, the filtered ones too: they tell what is too easy
            drawn, rounds = drawn + len(groups), rounds + 1
            tokens += sum(c.num_sampled for g in groups for c in g.completions)
            kept.extend(self.algo.select(groups))
            if rounds == 1:
                first, played = groups, episodes  # statistics describe the policy, before any filtering
        kept = kept[:cfg.num_prompts]
        for c in (c for g in kept for c in g.completions):
            c.policy_version = self.policy_version
        completions = [c for g in first for c in g.completions]
        stats = {
            "reward": float(np.mean([r for g in first for r in g.rewards])),
            "accuracy": float(np.mean([v.correct for g in first for v in g.verdicts])),
            "length": float(np.mean([c.num_sampled for c in completions])),
            "truncated": float(np.mean([c.truncated for c in completions])),
            "gen/groups_drawn": drawn, "gen/groups_kept": len(kept), "gen/groups_dropped": drawn - len(kept),
            "gen/rounds": rounds, "gen/tokens": tokens, "time/gen": time.perf_counter() - start,
            **self.sampler.metrics()}
        if played:
            stats["episode/turns"] = float(np.mean([len(e.turns) for e in played]))
            stats["episode/tool_calls"] = float(np.mean([e.tool_calls for e in played]))
        return kept, stats


REFILL_MARGIN = 1.25  # a refill draws this much more than the expected need, so that one more round mostly suffices


def refill_size(batch: int, kept: int, drawn: int) -> int:
    """How many prompts the next round draws: B at first (and while nothing was kept), then the missing groups over
    the keep rate seen so far, with a margin, at most B. Drawing another full B for the last few groups (as a fixed
    generation batch does) generates groups that are then thrown away unused."""
    if drawn == 0 or kept == 0:
        return batch
    return min(batch, math.ceil((batch - kept) * drawn / kept * REFILL_MARGIN))
