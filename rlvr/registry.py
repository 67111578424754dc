"""One generic name -> factory registry with lazy entry-point plugins, shared by verifiers and algorithms."""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Callable, Iterator
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Generic, TypeVar

T = TypeVar("T")


def iter_plugins(group: str) -> Iterator[tuple[EntryPoint, Any]]:
    """Load every entry point of `group`; one that fails to import gives one warning naming it, never a crash."""
    for ep in entry_points(group=group):
        try:
            obj = ep.load()
        except Exception as exc:  # a broken third-party plugin must not take rlvr down
            warnings.warn(f"rlvr: plugin {ep.name!r} ({ep.value}) in group {group!r} failed to load: {exc!r}",
                          RuntimeWarning, stacklevel=2)
            continue
        yield ep, obj


def suggest(name: str, known: list[str]) -> str:
    """A ' Did you mean ...?' hint for a mistyped name, or ''."""
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    return f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


class Registry(Generic[T]):
    """Maps names to factories (classes or functions). Plugins in the entry-point group `group` are loaded on
    the first look-up that needs them; each entry point's name is the registered name, its object the factory."""

    def __init__(self, kind: str, group: str) -> None:
        self.kind = kind
        self.group = group
        self._factories: dict[str, Callable[..., T]] = {}
        self._plugins_loaded = False

    def register(self, name: str, factory: Callable[..., T] | None = None) -> Any:
        """Register `factory` under `name`; without a factory, return a decorator."""
        if factory is None:
            return lambda f: self.register(name, f)
        if name in self._factories and self._factories[name] is not factory:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._factories[name] = factory
        return factory

    def _load_plugins(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for ep, obj in iter_plugins(self.group):
            if ep.name not in self._factories:
                self._factories[ep.name] = obj

    def get(self, name: str) -> Callable[..., T]:
        """The factory registered as `name`; a typo gets a 'did you mean' hint."""
        if name not in self._factories:
            self._load_plugins()
        if name not in self._factories:
            raise KeyError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}."
                           + suggest(name, self.names()))
        return self._factories[name]

    def make(self, name: str, **overrides: Any) -> T:
        """Build the object registered as `name` with keyword overrides of its defaults."""
        return self.get(name)(**overrides)

    def names(self) -> list[str]:
        self._load_plugins()
        return sorted(self._factories)

    def __contains__(self, name: str) -> bool:
        self._load_plugins()
        return name in self._factories
