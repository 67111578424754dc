"""An optional short supervised warm-start for from-scratch models, on gold answers of the training split.

Single-turn tasks (`AnswerTargets`): each target is ` answer`, then, with probability `continue_prob`, the question
repeated on a new line, then EOS. With `continue_prob > 0.5` the result behaves like a raw pretrained model: it
knows the answers but, decoding greedily, rambles on after giving one (here: echoes the question), so the verifier
reads the wrong number. RL has to teach it to answer and stop, a behaviour that carries over to held-out problems.

Multi-turn tasks (`EpisodeTargets`): each target is a gold episode played through the env (its demonstration,
using the tools with probability `tool_prob`, else answering at once), in exactly the token form of a rollout;
only the model's tokens are trained on. With a small `tool_prob` the model knows how to use a tool but seldom
does, and RL has to teach it when to."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from tqdm import tqdm
from transformers import PreTrainedTokenizerBase

from rlvr.batch import build_batch, micro_batches, token_logprobs
from rlvr.chat import ChatRenderer
from rlvr.envs.multiturn import MultiTurnEnv
from rlvr.envs.prompt_env import PromptEnv
from rlvr.rollout.episodes import demonstration
from rlvr.types import Completion, Problem

# The built-in tiny model's warm-start: 1500 steps left seed 0 on the plateau before carries on one CPU (its
# float kernels move the trajectory; RL then reached 35% held-out), 2000 got every seed tried off it.
TINY_WARMSTART_STEPS = 2000

Prompts = Sequence[str] | Sequence[list[int]]


class AnswerTargets:
    """Single-turn targets: `env`'s prompts, each answered ` answer` (echoing the question after it with
    probability `continue_prob`), then EOS."""

    def __init__(self, env: PromptEnv, tokenizer: PreTrainedTokenizerBase, continue_prob: float = 0.0) -> None:
        if not 0.0 <= continue_prob < 1.0:
            raise ValueError(f"continue_prob must be in [0, 1), got {continue_prob}")
        self.env, self.tokenizer, self.continue_prob = env, tokenizer, continue_prob

    def batch(self, rng: np.random.Generator, size: int) -> tuple[Prompts, list[Completion]]:
        problems = [self.env.source.sample(rng) for _ in range(size)]
        targets = []
        for p in problems:
            text = warmstart_target(p, self.env, rng, self.continue_prob)
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            targets.append(Completion(text=text, token_ids=ids + [self.tokenizer.eos_token_id]))
        return [self.env.format_prompt(p) for p in problems], targets


class EpisodeTargets:
    """Multi-turn targets: gold episodes of `env`'s problems (`env.demonstration`, with the tools with probability
    `tool_prob`), rendered by `renderer` as a rollout is; the env's tokens are masked out of the loss."""

    def __init__(self, env: MultiTurnEnv, renderer: ChatRenderer, tool_prob: float = 0.5,
                 max_tokens: int = 4096) -> None:
        if not 0.0 <= tool_prob <= 1.0:
            raise ValueError(f"tool_prob must be in [0, 1], got {tool_prob}")
        self.env, self.renderer, self.tool_prob, self.max_tokens = env, renderer, tool_prob, max_tokens

    def batch(self, rng: np.random.Generator, size: int) -> tuple[Prompts, list[Completion]]:
        prompts, targets = [], []
        for _ in range(size):
            problem = self.env.task.source.sample(rng)
            turns = self.env.demonstration(problem, use_tools=bool(rng.random() < self.tool_prob))
            episode = demonstration(self.env, self.renderer, self.renderer.tokenizer, problem, turns, self.max_tokens)
            prompts.append(episode.prompt_ids)
            targets.append(episode.completion())
        return prompts, targets


def supervised_warmstart(model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase,
                         targets: AnswerTargets | EpisodeTargets, steps: int, batch_size: int = 64, lr: float = 3e-3,
                         weight_decay: float = 1.0, seed: int = 0, micro_batch_tokens: int = 0,
                         progress: bool = False) -> list[float]:
    """`steps` AdamW steps of next-token cross-entropy on `targets`' batches (the model's tokens only); returns the
    loss curve. Strong weight decay makes a small model generalise to held-out problems far sooner than it
    memorises the training ones; the learning rate warms up (50 steps, or a tenth of a short run), then decays on
    a cosine to lr/10 (at a constant 6e-3 the tiny model can stay on its plateau before carries for 1500 steps,
    depending on the seed and the CPU). `micro_batch_tokens` packs rows of like length into forward passes of
    that many tokens (0: one pass), which saves the padding of batches that mix short and long targets. With
    `progress`, a bar shows the step and the loss."""
    rng = np.random.default_rng(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.99), weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: warmstart_lr_factor(i, steps))
    losses = []
    model.train()
    bar = tqdm(total=steps, disable=not progress, desc="rlvr warm-start (supervised, on gold answers, before RL)")
    for step in range(steps):
        prompts, completions = targets.batch(rng, batch_size)
        batch = build_batch(tokenizer, prompts, completions)
        tokens = batch.completion_mask.sum()
        optimizer.zero_grad(set_to_none=True)
        loss = 0.0
        for rows in micro_batches(batch, torch.arange(len(batch)), max_tokens=micro_batch_tokens):
            logp, _ = token_logprobs(model, batch.select(rows))
            part = -(logp.sum() / tokens)
            part.backward()
            loss += part.item()
        optimizer.step()
        schedule.step()
        losses.append(loss)
        bar.update(1)
        if step % 10 == 0:
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
    bar.close()
    return losses


def warmstart_lr_factor(step: int, steps: int, floor: float = 0.1) -> float:
    """The multiplier of lr at `step` of `steps`: a linear warm-up, then a cosine from 1 down to `floor`."""
    warmup = min(50, max(1, steps // 10))
    cosine = 0.5 * (1 + math.cos(math.pi * min(step, steps) / max(steps, 1)))
    return min(1.0, (step + 1) / warmup) * (floor + (1 - floor) * cosine)


def warmstart_target(problem: Problem, env: PromptEnv, rng: np.random.Generator, continue_prob: float) -> str:
    """` answer`, followed with probability `continue_prob` by the prompt again on a new line."""
    text = f" {_answer(problem)}"
    if rng.random() < continue_prob:
        text += f"\n{env.format_prompt(problem)}"
    return text


def _answer(problem: Problem) -> str:
    if problem.answer is None:
        raise ValueError(f"problem {problem.id!r} has no gold answer to warm-start on")
    return problem.answer
