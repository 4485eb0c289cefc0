"""Checks that need the whole config: names that refer to each other, and the decision
table's shape (a default exists, nothing is shadowed by it)."""

from __future__ import annotations

from pydantic import ValidationError

from router_proxy.config.errors import Path
from router_proxy.config.schema import Config, DecisionConfig
from router_proxy.decisions.rules import RuleParser
from router_proxy.selection.registry import SELECTORS, MultiCallSelector

Problem = tuple[Path, str]
AUTO = "auto"
# Reported in x-router-decision when a request names a model and bypasses the decisions.
DIRECT = "direct"
RESERVED_SIGNAL_NAMES = frozenset({"all", "any", "not", "true", "false"})


def check_references(config: Config) -> list[Problem]:
    problems: list[Problem] = []
    for name, model in config.models.items():
        if model.provider not in config.providers:
            problems.append(
                (
                    ("models", name, "provider"),
                    f"unknown provider '{model.provider}'"
                    f" (known: {', '.join(sorted(config.providers))})",
                )
            )
    problems += _check_model_names(config)
    problems += _check_preference_keys(config)
    problems += _check_names(config)
    signals = {s.name: s for s in config.signals}
    parser = RuleParser(signals)
    for i, decision in enumerate(config.decisions):
        parser.parse(decision.when, ("decisions", i, "when"))
        problems += _check_route(config, i, decision)
        problems += _check_shadow(config, i, decision)
    problems += parser.errors
    problems += _check_default(config.decisions)
    problems += _check_records(config)
    return problems


def _check_records(config: Config) -> list[Problem]:
    """``records.decisions`` names decisions (or `direct`)."""
    if config.records is None:
        return []
    known = {d.name for d in config.decisions} | {DIRECT}
    return [
        (("records", "decisions", name), f"unknown decision '{name}'")
        for name in config.records.decisions
        if name not in known
    ]


def _check_shadow(config: Config, i: int, decision: DecisionConfig) -> list[Problem]:
    """A decision's shadow models are configured models, and its requests are recorded
    with their content: a shadow answer is worth its cost only beside the prompt."""
    if decision.shadow is None:
        return []
    problems: list[Problem] = [
        (("decisions", i, "shadow", "models", j), f"unknown model '{name}'")
        for j, name in enumerate(decision.shadow.models or ())
        if name not in config.models
    ]
    records = config.records
    own = records.decisions.get(decision.name) if records is not None else None
    content = records is not None and (
        own.content if own is not None and own.content is not None else records.content
    )
    if not content:
        problems.append(
            (
                ("decisions", i, "shadow"),
                "shadow sampling needs decision records with content: add `records: "
                "{content: true}` (or `records.decisions."
                f"{decision.name}.content: true`)",
            )
        )
    return problems


def _check_model_names(config: Config) -> list[Problem]:
    """Fallback lists and per-model limits name configured models."""
    problems: list[Problem] = []
    for name, model in config.models.items():
        for j, other in enumerate(model.fallbacks):
            path = ("models", name, "fallbacks", j)
            if other not in config.models:
                problems.append((path, f"unknown model '{other}'"))
            elif other == name:
                problems.append((path, "a model cannot fall back to itself"))
    for name in config.limits.per_model:
        if name not in config.models:
            problems.append((("limits", "per_model", name), f"unknown model '{name}'"))
    return problems


def _check_preference_keys(config: Config) -> list[Problem]:
    """A per-client preference policy names a key the server accepts."""
    keys = {k.get_secret_value() for k in config.server.api_keys}
    return [
        (("preferences", "per_client", i, "key"), "not one of server.api_keys")
        for i, entry in enumerate(config.preferences.per_client)
        if entry.key.get_secret_value() not in keys
    ]


def _check_names(config: Config) -> list[Problem]:
    problems: list[Problem] = []
    seen_signals: set[str] = set()
    for i, signal in enumerate(config.signals):
        problems += _unique(signal.name, seen_signals, ("signals", i, "name"), "signal")
        if signal.name in RESERVED_SIGNAL_NAMES:
            problems.append((("signals", i, "name"), f"'{signal.name}' is a reserved word"))
    seen_decisions: set[str] = set()
    for i, decision in enumerate(config.decisions):
        path = ("decisions", i, "name")
        problems += _unique(decision.name, seen_decisions, path, "decision")
        if decision.name == DIRECT:
            problems.append((path, f"'{DIRECT}' is reserved for requests that name a model"))
        if decision.name in config.models:
            problems.append(
                (
                    path,
                    f"'{decision.name}' is also a model name; a request for it would be ambiguous",
                )
            )
    for name in {AUTO} & (set(config.models) | seen_decisions):
        where = ("models", name) if name in config.models else ("decisions",)
        problems.append(
            (where, f"'{name}' is reserved: `model: auto` routes through the decisions")
        )
    return problems


def _unique(name: str, seen: set[str], path: Path, kind: str) -> list[Problem]:
    if name in seen:
        return [(path, f"duplicate {kind} name '{name}'")]
    seen.add(name)
    return []


def _check_route(config: Config, i: int, decision: DecisionConfig) -> list[Problem]:
    problems: list[Problem] = []
    route = decision.route
    for j, candidate in enumerate(route.candidates):
        path = ("decisions", i, "route", "candidates", j)
        if candidate not in config.models:
            problems.append((path, f"unknown model '{candidate}'"))
        elif candidate in route.candidates[:j]:
            problems.append((path, f"model '{candidate}' is listed twice"))
    for j, model in enumerate(decision.context_fallbacks):
        at: Path = ("decisions", i, "context_fallbacks", j)
        if model not in config.models:
            problems.append((at, f"unknown model '{model}'"))
        elif model in decision.context_fallbacks[:j]:
            problems.append((at, f"model '{model}' is listed twice"))
    selector = SELECTORS.get(route.algorithm)
    if selector is None:
        problems.append(
            (
                ("decisions", i, "route", "algorithm"),
                f"unknown algorithm '{route.algorithm}' (known: {', '.join(sorted(SELECTORS))})",
            )
        )
    else:
        at = ("decisions", i, "route", "params")
        try:
            params = selector.config_model.model_validate(route.params)
        except ValidationError as exc:
            for err in exc.errors():
                where = _in_data(tuple(err["loc"]), route.params)
                problems.append(((*at, *where), err["msg"].removeprefix("Value error, ")))
        else:
            if issubclass(selector, MultiCallSelector):
                return problems + _check_multi_call(config, i, selector, params)
            known = tuple(c for c in route.candidates if c in config.models)
            problems += [(at, msg) for msg in selector.check(known, params, config)]
    multi = selector is not None and issubclass(selector, MultiCallSelector)
    if not route.candidates and not multi:
        problems.append((("decisions", i, "route", "candidates"), "name at least one model"))
    return problems


def _in_data(loc: tuple[int | str, ...], data: object) -> tuple[int | str, ...]:
    """Pydantic's ``loc`` without the tags it inserts for a tagged union (a ``rule:`` or
    ``type:`` value), so it names a place in the YAML."""
    path: list[int | str] = []
    node = data
    for part in loc:
        if (
            isinstance(node, dict)
            and part not in node
            and part
            in (
                node.get("rule"),
                node.get("type"),
            )
        ):
            continue
        path.append(part)
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            node = None
    return tuple(path)


def _check_multi_call(
    config: Config, i: int, selector: type[MultiCallSelector], params: object
) -> list[Problem]:
    """A cascade or aggregate names its models in its params, each a configured model;
    ``candidates`` stays empty (they would say nothing the params do not)."""
    route = config.decisions[i].route
    at: Path = ("decisions", i, "route")
    problems: list[Problem] = []
    if route.candidates:
        problems.append(
            (
                (*at, "candidates"),
                f"{route.algorithm} names its models in params; leave candidates out",
            )
        )
    for model, where in selector.models_named(params):
        if model not in config.models:
            problems.append(((*at, "params", *where), f"unknown model '{model}'"))
    problems += [((*at, "params", *where), msg) for where, msg in selector.problems(params)]
    known = tuple(m for m in selector.candidates_of(params) if m in config.models)
    problems += [((*at, "params"), msg) for msg in selector.check(known, params, config)]
    return problems


def _check_default(decisions: list[DecisionConfig]) -> list[Problem]:
    ordered = sorted(enumerate(decisions), key=lambda item: -item[1].priority)
    always = [(i, d) for i, d in ordered if d.when is True]
    if not always:
        return [(("decisions",), "no default decision: add one with `when: true`")]
    first_index, first = always[0]
    position = [i for i, _ in ordered].index(first_index)
    problems: list[Problem] = []
    for i, decision in ordered[position + 1 :]:
        if decision.when is not False:
            problems.append(
                (
                    ("decisions", i, "when"),
                    f"decision '{decision.name}' can never match: '{first.name}' (when: true, "
                    f"priority {first.priority}) is tried before it; lower that one's priority, or "
                    "write `when: false` for a decision meant only to be requested by name",
                )
            )
    return problems
