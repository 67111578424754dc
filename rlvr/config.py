"""The run's configuration: one plain dataclass, importable without torch (the CLI parses into it before anything
heavy loads). Its defaults are the embedded CPU demo."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

# behaviour-policy correction modes (rlvr/algorithms/correction.py): weight granularity x what happens above is_cap
IS_MODES = ("token_truncate", "token_mask", "sequence_truncate", "sequence_mask")


def check_is_correction(mode: str | None) -> None:
    """Raise a ValueError unless `mode` is None or one of IS_MODES."""
    if mode is not None and mode not in IS_MODES:
        raise ValueError(f"is_correction={mode!r} is not one of None, {', '.join(IS_MODES)}")


# where metrics go besides RUN_DIR/metrics.jsonl (rlvr/metrics.py)
TRACKERS = ("tensorboard", "wandb")


def check_report_to(report_to: list[str]) -> None:
    """A ValueError naming any tracker that is not one of TRACKERS."""
    unknown = sorted(set(report_to) - set(TRACKERS))
    if unknown:
        raise ValueError(f"report_to: unknown tracker(s) {unknown}; choose from {', '.join(TRACKERS)} (or none)")


@dataclass
class TrainConfig:
    """Everything a run needs. The defaults are the embedded CPU demo: a tiny model learns arithmetic."""

    model: str = "tiny"  # "tiny", a local directory, or a hub id
    env: str = "rlvr/Arithmetic-v0"
    env_kwargs: dict[str, Any] = field(default_factory=lambda: {"level": 2})
    train_split: str = "train"
    eval_split: str = "test"  # held-out problems for evaluation
    algo: str = "dapo"
    algo_kwargs: dict[str, Any] = field(default_factory=dict)
    engine: str = "hf"  # "hf", "vllm", or "ray-hf" / "ray-vllm" (those engines on Ray actors, docs/scaling.md)
    engine_workers: int = 2  # ray-*: rollout actors
    engine_gpus: float = 0.0  # ray-*: GPUs per rollout actor (a fraction shares one GPU)
    # vllm, ray-vllm: keyword arguments for `vllm.LLM` (gpu_memory_utilization, dtype, max_model_len, ...)
    vllm_kwargs: dict[str, Any] = field(default_factory=dict)
    device: str = "auto"  # "auto" (cuda when available), "cpu", "cuda", ...
    strategy: str = "ddp"  # under torchrun: "ddp" (each rank holds the whole model) or "fsdp" (parameters,
    # gradients and optimizer state sharded across ranks by torch FSDP2; see rlvr/distributed.py)
    executor: str = "serial"  # verifier executor: "serial", "process" or "ray"
    steps: int = 30
    # which training problems a batch poses (rlvr/sampler.py): "uniform" (the source's own draws) or "frontier" (a
    # curriculum drawing difficulty levels, or problems, whose recent pass rate is neither ~0 nor ~1), and its options
    sampler: str = "uniform"
    sampler_kwargs: dict[str, Any] = field(default_factory=dict)
    num_prompts: int = 32  # B
    group_size: int = 8  # G
    max_new_tokens: int = 8
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    stop: list[str] = field(default_factory=list)  # a turn also ends after any of these, e.g. ["</tool_call>"]
    # behaviour-policy correction (docs/offpolicy.md): weight each token's policy-gradient term by pi_old / mu (the
    # learner's log-probs over the engine's), per token or per sequence, truncated at or masked above is_cap; and/or
    # IcePop's two-sided mask (weight 0 where a token's ratio is below is_mask_low or above is_mask_high)
    is_correction: str | None = None  # None or one of IS_MODES
    is_cap: float = 3.0
    is_mask_low: float | None = None
    is_mask_high: float | None = None
    # asynchronous rollouts (docs/offpolicy.md): a worker process generates up to k batches ahead of the learner,
    # batch t with the weights of step max(0, t - 1 - k); 0: synchronous. Stale samples are always corrected: with
    # async_rollouts > 0 and no is_correction, "token_truncate" is used
    async_rollouts: int = 0
    # the demo's tiny model learns more in its 30 steps at 5e-4 than at 1e-3 (held-out 95.5% vs 88.1%, 2 seeds x 3
    # runs, bench/async_rollouts.py) and tolerates asynchronous rollouts' staleness (docs/offpolicy.md)
    lr: float = 5e-4
    weight_decay: float = 0.0
    warmup_steps: int = 5
    max_grad_norm: float = 1.0
    epochs: int = 1  # mu: passes over each batch
    minibatch_size: int = 0  # completions per optimizer step (0: the whole batch)
    micro_batch_size: int = 0  # completions per forward pass, gradients accumulated (0: the minibatch)
    # padded tokens per forward pass instead, rows sorted by length so padding is small (0: micro_batch_size rows)
    micro_batch_tokens: int = 0
    dtype: str = "float32"  # weights as loaded: "float32", "bfloat16" or "float16"
    mixed_precision: str = "no"  # "bf16" or "fp16": learner forwards under torch.autocast over float32 weights
    gradient_checkpointing: bool = False  # recompute each decoder layer's activations in backward
    logit_chunk_tokens: int = 0  # tokens per chunk of the LM head (0: as many as fit 2^24 logits; rlvr/lm_head.py)
    engine_batch_tokens: int = 65536  # hf engine: padded tokens (rows x (prompt + max_new_tokens)) per batch
    # LoRA adapters through peft, e.g. {"r": 16, "alpha": 32, "target_modules": [...]} (peft.LoraConfig fields; empty:
    # full fine-tuning). The reference policy is the base model with the adapters disabled.
    lora: dict[str, Any] = field(default_factory=dict)
    # how the learner's forwards run the batch (rlvr.batch.token_logprobs; none changes the result beyond float
    # summation order): each distinct prompt once, not G times; each distinct prompt + completion once (a group's
    # repeated answers); rows in at most length_buckets groups of similar length, each padded to its own longest
    share_prompt_forward: bool = True
    dedupe_forward: bool = True
    length_buckets: int = 4
    # supervised warm-start on gold answers before RL (rlvr/warmstart.py); None: 2000 steps for the built-in
    # "tiny" model, which starts from random weights, and none for any other model
    warmstart_steps: int | None = None
    warmstart_lr: float = 6e-3
    warmstart_weight_decay: float = 1.0
    warmstart_continue_prob: float = 0.7  # chance a warm-start target echoes the question after the answer
    warmstart_tool_prob: float = 0.2  # multi-turn: chance a warm-start demonstration uses the env's tools
    # multi-turn envs: an episode's reward is the "sum" of its step rewards or the "final" step's; an episode also
    # ends once the tokens after its first prompt reach max_episode_tokens (0: only the env's max_turns end it)
    episode_return: str = "sum"
    max_episode_tokens: int = 0
    eval_every: int = 5
    eval_problems: int = 200
    # held-out evaluation: greedy pass@1, and from eval_n samples per problem (0: max(eval_k); 1: none) the unbiased
    # pass@k and pass^k for each k in eval_k and mean@n, each with its standard error (rlvr/evaluation.py)
    eval_k: list[int] = field(default_factory=lambda: [4])
    eval_n: int = 0
    save_every: int = 50
    out_dir: str = "runs/rlvr"
    seed: int = 0
    threads: int = 0  # torch CPU threads (0: torch's default, every core); 1 is fastest for a tiny model when
    # other jobs share the CPU
    # bitwise-reproducible runs, so an exact --resume, on any number of threads: torch's deterministic algorithms
    # (on CPU the backward of indexing, index_put with accumulation, otherwise sums in thread order; on CUDA also
    # cuBLAS's fixed workspace). False trades that for the faster kernels, on a GPU say
    deterministic: bool = True
    chat_template: bool = True  # render chat messages with the tokenizer's template when it has one
    progress: bool = True
    # trackers besides out_dir/metrics.jsonl: "tensorboard" (out_dir/tensorboard, when installed), "wandb" (Weights &
    # Biases; WANDB_PROJECT names the project, WANDB_MODE=offline needs no network); [] for the JSONL file only
    report_to: list[str] = field(default_factory=lambda: ["tensorboard"])

    def __post_init__(self) -> None:
        for name in ("minibatch_size", "micro_batch_size", "micro_batch_tokens", "logit_chunk_tokens"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0 (0: off), got {getattr(self, name)}")
        if self.episode_return not in ("sum", "final"):
            raise ValueError(f"episode_return must be 'sum' or 'final', got {self.episode_return!r}")
        if self.max_episode_tokens < 0:
            raise ValueError(f"max_episode_tokens must be >= 0 (0: off), got {self.max_episode_tokens}")
        check_is_correction(self.is_correction)
        if self.async_rollouts < 0:
            raise ValueError(f"async_rollouts must be >= 0 (0: synchronous), got {self.async_rollouts}")
        if isinstance(self.report_to, str):  # "wandb", "tensorboard,wandb" (as typed on a command line), "none"
            self.report_to = [t.strip() for t in self.report_to.strip("[]").split(",") if t.strip() != "none"]
        self.report_to = [t for t in (self.report_to or []) if t]
        check_report_to(self.report_to)
        self.eval_k = [self.eval_k] if isinstance(self.eval_k, int) else list(self.eval_k)
        if not self.eval_k or min(self.eval_k) < 1 or self.eval_n < 0:
            raise ValueError(f"eval_k must be a non-empty list of k >= 1 and eval_n >= 0, got {self.eval_k}, "
                             f"{self.eval_n}")
        if self.eval_n and self.eval_n < max(self.eval_k):
            raise ValueError(f"pass@k needs eval_n >= k samples per problem: eval_n={self.eval_n}, "
                             f"eval_k={self.eval_k}")
        if self.engine_batch_tokens < 1:
            raise ValueError(f"engine_batch_tokens must be >= 1, got {self.engine_batch_tokens}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown config keys {unknown}; known: {sorted(known)}")
        return cls(**values)
