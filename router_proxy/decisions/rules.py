"""The rule language of ``when:``: parse (with YAML paths), evaluate lazily, render.

when: true                         always
when: code                         signal `code` fired
when: {domain: law}                signal `domain` has value `law`
when: {all: [a, {not: b}]}         and / or / not, nested freely
when: {any: [a, b]}
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from router_proxy.config.base import SignalConfigBase
from router_proxy.config.errors import Path
from router_proxy.signals.base import SignalResult

Resolve = Callable[[str], Awaitable[SignalResult]]


@dataclass(frozen=True, slots=True)
class Const:
    value: bool


@dataclass(frozen=True, slots=True)
class Ref:
    signal: str


@dataclass(frozen=True, slots=True)
class Equals:
    signal: str
    value: str | float | bool


@dataclass(frozen=True, slots=True)
class AllOf:
    children: tuple[Rule, ...]


@dataclass(frozen=True, slots=True)
class AnyOf:
    children: tuple[Rule, ...]


@dataclass(frozen=True, slots=True)
class Not:
    child: Rule


Rule = Const | Ref | Equals | AllOf | AnyOf | Not

_COMBINATORS = ("all", "any", "not")


class RuleParser:
    """Turns raw ``when`` data into a Rule, collecting (path, message) for every mistake."""

    def __init__(
        self,
        signals: Mapping[str, SignalConfigBase],
        cost_rank: Mapping[str, int] | None = None,
    ) -> None:
        self.signals = signals
        # Per signal name, how costly it is to evaluate (the signal's ``cost_rank``):
        # groups evaluate cheap children first. Checking a config needs no order.
        self.cost_rank = cost_rank or {}
        self.errors: list[tuple[Path, str]] = []

    def parse(self, raw: Any, path: Path) -> Rule:
        if isinstance(raw, bool):
            return Const(raw)
        if isinstance(raw, str):
            return self._ref(raw, path)
        if isinstance(raw, dict) and len(raw) == 1:
            key, value = next(iter(raw.items()))
            if key in ("all", "any"):
                return self._group(key, value, (*path, key))
            if key == "not":
                return Not(self.parse(value, (*path, key)))
            return self._equals(str(key), value, (*path, key))
        self.errors.append(
            (
                path,
                "expected true/false, a signal name, {signal: value}, "
                f"or one of {{all: [...]}}, {{any: [...]}}, {{not: ...}}; got {raw!r}",
            )
        )
        return Const(False)

    def _group(self, key: str, value: Any, path: Path) -> Rule:
        if not isinstance(value, list) or not value:
            self.errors.append((path, f"`{key}` takes a non-empty list"))
            return Const(False)
        children = tuple(self.parse(v, (*path, i)) for i, v in enumerate(value))
        # Cheap signals first: and/or give the same answer in any order, and a cheap
        # child often settles the group before an expensive one runs.
        ordered = tuple(sorted(children, key=self.cost))
        return AllOf(ordered) if key == "all" else AnyOf(ordered)

    def _ref(self, name: str, path: Path) -> Rule:
        if name not in self.signals:
            self.errors.append((path, f"unknown signal '{name}'{self._known()}"))
        return Ref(name)

    def _equals(self, name: str, value: Any, path: Path) -> Rule:
        signal = self.signals.get(name)
        if signal is None:
            self.errors.append((path, f"unknown signal '{name}'{self._known()}"))
        elif not isinstance(value, str | int | float | bool):
            self.errors.append((path, f"expected a scalar value for signal '{name}'"))
        else:
            problem = signal.accepts_value(value)
            if problem is not None:
                self.errors.append((path, problem))
        return Equals(name, value if isinstance(value, str | int | float | bool) else str(value))

    def _known(self) -> str:
        return f" (known: {', '.join(sorted(self.signals))})" if self.signals else " (none defined)"

    def cost(self, rule: Rule) -> int:
        if isinstance(rule, Const):
            return -1
        if isinstance(rule, Ref | Equals):
            return self.cost_rank.get(rule.signal, 0)
        if isinstance(rule, Not):
            return self.cost(rule.child)
        return max(self.cost(c) for c in rule.children)


async def holds(rule: Rule, resolve: Resolve) -> bool:
    """Evaluate with short-circuit; signals are resolved only when reached."""
    if isinstance(rule, Const):
        return rule.value
    if isinstance(rule, Ref):
        return (await resolve(rule.signal)).fired
    if isinstance(rule, Equals):
        result = await resolve(rule.signal)
        return result.fired and result.value == rule.value
    if isinstance(rule, Not):
        return not await holds(rule.child, resolve)
    if isinstance(rule, AllOf):
        for child in rule.children:
            if not await holds(child, resolve):
                return False
        return True
    for child in rule.children:
        if await holds(child, resolve):
            return True
    return False


def render(rule: Rule) -> str:
    """Compact text of a rule, e.g. ``all(code, not(long))``."""
    if isinstance(rule, Const):
        return "true" if rule.value else "false"
    if isinstance(rule, Ref):
        return rule.signal
    if isinstance(rule, Equals):
        return f"{rule.signal}={rule.value}"
    if isinstance(rule, Not):
        return f"not({render(rule.child)})"
    name = "all" if isinstance(rule, AllOf) else "any"
    return f"{name}({', '.join(render(c) for c in rule.children)})"


def explain(rule: Rule, results: Mapping[str, SignalResult]) -> str:
    """The rule with each signal's outcome: ``all(code=true ✓, not(long=false ✗))``.
    A signal never computed (short-circuited away) shows ``?``."""
    if isinstance(rule, Const):
        return render(rule)
    if isinstance(rule, Ref | Equals):
        result = results.get(rule.signal)
        if result is None:
            return f"{render(rule)} ?"
        held = result.fired and (isinstance(rule, Ref) or result.value == rule.value)
        value = result.value if not isinstance(result.value, float) else round(result.value, 3)
        shown = rule.signal if isinstance(rule, Ref) else f"{rule.signal}={rule.value}"
        return f"{shown} [{value}] {'✓' if held else '✗'}"
    if isinstance(rule, Not):
        return f"not({explain(rule.child, results)})"
    name = "all" if isinstance(rule, AllOf) else "any"
    return f"{name}({', '.join(explain(c, results) for c in rule.children)})"
