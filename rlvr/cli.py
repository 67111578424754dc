"""The `rlvr` command line: train, evaluate, plot a run, list what is registered, verify a completion by hand."""

from __future__ import annotations

import argparse
import inspect
import json
import sys
import time
from collections.abc import Callable, Sequence

import gymnasium as gym

from rlvr.config import TrainConfig


def _summary(obj: object) -> str:
    """First line of an object's docstring."""
    doc = inspect.getdoc(obj) or ""
    return doc.splitlines()[0] if doc else ""


def _table(rows: list[tuple[str, ...]], header: tuple[str, ...]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    def line(row: tuple[str, ...]) -> str:
        return "  ".join([f"{cell:<{w}}" for cell, w in zip(row, widths)] + [row[-1]])
    return "\n".join([line(header), line(tuple("-" * len(h) for h in header)), *map(line, rows)])


def _episode_shape(env_id: str, factory: Callable[..., object]) -> tuple[str, str]:
    """How many turns an env's episode takes (its factory's `max_turns` default, else 1) and its tools' names
    (when it can be made without arguments; a file-backed env needs its data)."""
    turns = inspect.signature(factory).parameters.get("max_turns")
    import rlvr

    try:
        tools = getattr(rlvr.make(env_id).unwrapped, "tools", None) or []
    except Exception:
        tools = []
    return (f"up to {turns.default}" if turns is not None else "1",
            ", ".join(t["function"]["name"] for t in tools) or "-")


def _env_rows() -> list[tuple[str, ...]]:
    from rlvr import envs

    rows = []
    for env_id in envs.names():
        entry = gym.spec(env_id).entry_point
        try:
            factory = gym.envs.registration.load_env_creator(entry) if isinstance(entry, str) else entry
            rows.append((env_id, *_episode_shape(env_id, factory), _summary(factory)))
        except Exception as exc:  # a broken plugin env still gets its line
            rows.append((env_id, "?", "?", f"(cannot load: {exc})"))
        if env_id == "rlvr/ReasoningGym-v0":  # one id, one line per data set it wraps
            from rlvr.envs.tasks.reasoning_gym import describe, task_names

            rows += [(f"  task={name}", "1", "-", describe(name)) for name in task_names()]
    return rows


def _registry_rows(kind: str) -> list[tuple[str, ...]]:
    if kind == "verifiers":
        from rlvr.verifiers import VERIFIERS as registry
    else:
        from rlvr.algorithms import ALGORITHMS as registry
    return [(name, _summary(registry.get(name))) for name in registry.names()]


def cmd_list(args: argparse.Namespace) -> int:
    kinds = [args.kind] if args.kind else ["envs", "verifiers", "algorithms"]
    for i, kind in enumerate(kinds):
        if kind == "envs":
            rows, header = _env_rows(), ("env", "turns", "tools", "description")
        else:
            rows, header = _registry_rows(kind), (kind[:-1], "description")
        print(("\n" if i else "") + _table(rows, header))
    return 0


def _parse_kwargs(pairs: Sequence[str], flag: str) -> dict[str, object]:
    """`key=value` pairs; values are parsed as Python literals when they are one (numbers, True, lists). A pair
    without `=` is an error naming `flag`, where it came from."""
    import ast

    out: dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"{flag} expects key=value, got {pair!r}")
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


def cmd_verify(args: argparse.Namespace) -> int:
    import rlvr

    env = rlvr.make(args.env, **_parse_kwargs(args.env_kwarg, "--env-kwarg"), render_mode="ansi")
    options = {"problem_id": args.problem_id} if args.problem_id else None
    env.reset(seed=args.seed, options=options)
    completion = sys.stdin.read() if args.completion == "-" else args.completion
    env.step(completion)
    print(env.render())
    return 0


def _set_dotted(target: dict[str, object], key: str, value: object) -> None:
    *parents, leaf = key.split(".")
    for part in parents:
        target = target.setdefault(part, {})  # type: ignore[assignment]
        if not isinstance(target, dict):
            raise SystemExit(f"override {key!r}: {part!r} is not a mapping")
    target[leaf] = value


def train_config(args: argparse.Namespace) -> TrainConfig:
    """Defaults, then the env's defaults for the tiny model (when the model is the tiny one), then the --config
    YAML file, then the flags, then dotted KEY=VALUE overrides."""
    values: dict[str, object] = {}
    if args.config:
        import yaml

        with open(args.config) as f:
            values.update(yaml.safe_load(f) or {})
    for flag in ("model", "env", "algo", "out_dir", "steps", "seed"):
        if getattr(args, flag, None) is not None:
            values[flag] = getattr(args, flag)
    for key, value in _parse_kwargs(args.overrides, "a KEY=VALUE override").items():
        _set_dotted(values, key, value)
    if "env" in values and "env_kwargs" not in values and values["env"] != TrainConfig.env:
        values["env_kwargs"] = {}  # the default env's kwargs do not carry over to another env
    if values.get("model", TrainConfig.model) == "tiny" and "env" in values:
        from rlvr.envs import tiny_defaults

        defaults = tiny_defaults(str(values["env"]))
        if "env_kwargs" in defaults:  # merged with the given env kwargs, which win
            values["env_kwargs"] = {**defaults.pop("env_kwargs"), **values.get("env_kwargs", {})}
        values = {**defaults, **values}
    return TrainConfig.from_dict(values)


def cmd_train(args: argparse.Namespace) -> int:
    from rlvr.distributed import make_trainer
    from rlvr.plot import load_metrics, plot_runs

    start = time.perf_counter()
    cfg = train_config(args)
    with make_trainer(cfg) as trainer:  # one rank of a torchrun job, or a single process
        trainer.train(resume=args.resume)
    if not trainer.is_main:
        return 0
    evals = [r for r in load_metrics(cfg.out_dir) if "eval/pass@1" in r]
    if evals:
        print(f"held-out pass@1: {evals[0]['eval/pass@1']:.1%} (step {evals[0]['step']}) -> "
              f"{evals[-1]['eval/pass@1']:.1%} (step {evals[-1]['step']}) in {time.perf_counter() - start:.0f} s")
    for path in plot_runs([cfg.out_dir]):
        print(f"wrote {path}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from rlvr.trainer import Trainer

    cfg = train_config(args)
    cfg.progress, cfg.async_rollouts = False, 0  # an evaluation generates in this process
    with Trainer(cfg) as trainer:
        print(json.dumps(trainer.evaluate(), indent=2))
    return 0


def cmd_save(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rlvr.models import load_policy, save_policy

    model, tokenizer = load_policy(args.model)
    save_policy(model, tokenizer, Path(args.out), merged=True)
    print(f"wrote {args.out}")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from rlvr.plot import plot_runs

    for path in plot_runs(args.run_dirs, args.out):
        print(f"wrote {path}")
    return 0


def _add_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="'tiny' (built in code), a saved model directory, or a hub id")
    p.add_argument("--env", help="env id, e.g. rlvr/GSM8K-v0 (env kwargs: env_kwargs.path=...)")
    p.add_argument("--algo", help="algorithm name (see `rlvr list algorithms`)")
    p.add_argument("--config", help="YAML file with TrainConfig fields")
    p.add_argument("--out-dir", dest="out_dir", help="run directory (metrics, checkpoints, plots)")
    p.add_argument("--seed", type=int)
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="dotted overrides of TrainConfig, e.g. steps=50 algo_kwargs.eps_high=0.3")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rlvr", description="Reinforcement learning from verifiable rewards.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a policy with RL (no arguments: the embedded CPU demo)")
    _add_run_args(p)
    p.add_argument("--steps", type=int, help="RL steps")
    p.add_argument("--resume", action="store_true", help="continue from OUT_DIR/checkpoint")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="held-out greedy pass@1 and sampled pass@k of a model on an env")
    _add_run_args(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("save", help="write a model as one plain transformers directory (a LoRA adapter, such as "
                                    "RUN/checkpoint/model, merged into its base)")
    p.add_argument("model", help="a saved model or adapter directory")
    p.add_argument("out", help="the directory to write")
    p.set_defaults(func=cmd_save)

    p = sub.add_parser("plot", help="write PNG learning curves of runs (several: overlaid) and a dashboard of the "
                                    "main panels")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--out", help="where the figures go (default RUN_DIR/plots for one run; needed for several)")
    p.set_defaults(func=cmd_plot)

    p = sub.add_parser("list", help="list registered envs, verifiers and algorithms (plugins included)")
    p.add_argument("kind", nargs="?", choices=["envs", "verifiers", "algorithms"], help="only this kind")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("verify", help="score one completion of one problem and print the verdict")
    p.add_argument("--env", required=True, help="env id, e.g. rlvr/Arithmetic-v0")
    p.add_argument("--problem-id", help="problem to pose (default: one drawn with --seed)")
    p.add_argument("--seed", type=int, default=0, help="seed for drawing the problem (default 0)")
    p.add_argument("--completion", required=True, help="the completion text, or - to read it from stdin")
    p.add_argument("--env-kwarg", action="append", default=[], metavar="KEY=VALUE",
                   help="keyword for the env, e.g. path=data.jsonl (repeatable)")
    p.set_defaults(func=cmd_verify)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    return func(args)


if __name__ == "__main__":
    sys.exit(main())
