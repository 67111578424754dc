"""The `rlvr` command line: list what is registered, verify a completion by hand (train/eval/plot join here)."""

from __future__ import annotations

import argparse
import inspect
import sys
from collections.abc import Callable, Sequence

import gymnasium as gym


def _summary(obj: object) -> str:
    """First line of an object's docstring."""
    doc = inspect.getdoc(obj) or ""
    return doc.splitlines()[0] if doc else ""


def _table(rows: list[tuple[str, str]], header: tuple[str, str]) -> str:
    width = max(len(r[0]) for r in [header, *rows])
    lines = [f"{header[0]:<{width}}  {header[1]}", f"{'-' * width}  {'-' * len(header[1])}"]
    return "\n".join(lines + [f"{a:<{width}}  {b}" for a, b in rows])


def _env_rows() -> list[tuple[str, str]]:
    from rlvr import envs

    rows = []
    for env_id in envs.names():
        entry = gym.spec(env_id).entry_point
        try:
            factory = gym.envs.registration.load_env_creator(entry) if isinstance(entry, str) else entry
            rows.append((env_id, _summary(factory)))
        except Exception as exc:  # a broken plugin env still gets its line
            rows.append((env_id, f"(cannot load: {exc})"))
    return rows


def _registry_rows(kind: str) -> list[tuple[str, str]]:
    if kind == "verifiers":
        from rlvr.verifiers import VERIFIERS as registry
    else:
        from rlvr.algorithms import ALGORITHMS as registry
    return [(name, _summary(registry.get(name))) for name in registry.names()]


def cmd_list(args: argparse.Namespace) -> int:
    kinds = [args.kind] if args.kind else ["envs", "verifiers", "algorithms"]
    for i, kind in enumerate(kinds):
        rows = _env_rows() if kind == "envs" else _registry_rows(kind)
        print(("\n" if i else "") + _table(rows, (kind[:-1], "description")))
    return 0


def _parse_kwargs(pairs: Sequence[str]) -> dict[str, object]:
    """`key=value` pairs; values are parsed as Python literals when they are one (numbers, True, lists)."""
    import ast

    out: dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--env-kwarg expects key=value, got {pair!r}")
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


def cmd_verify(args: argparse.Namespace) -> int:
    import rlvr

    env = rlvr.make(args.env, **_parse_kwargs(args.env_kwarg), render_mode="ansi")
    options = {"problem_id": args.problem_id} if args.problem_id else None
    env.reset(seed=args.seed, options=options)
    completion = sys.stdin.read() if args.completion == "-" else args.completion
    env.step(completion)
    print(env.render())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rlvr", description="Reinforcement learning from verifiable rewards.")
    sub = parser.add_subparsers(dest="command", required=True)

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
