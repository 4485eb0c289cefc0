"""Per-request preferences (the user flags the Tryage paper routes by): a caller narrows
or re-ranks what the decision offers, for one request.

=====================  ==================================  ============================
body field             header                              effect
=====================  ==================================  ============================
``allowed_models``     ``x-router-allowed-models: a,b``    only these of the candidates
``excluded_models``    ``x-router-excluded-models: c``     none of these
``max_cost_per_1k``    ``x-router-max-cost-per-1k: 0.002``  only models whose input and
                                                           output price per 1,000 tokens
                                                           is at most this (a budget tier)
``cost_weight``        ``x-router-cost-weight: 0.5``       the learned selectors' trade
                                                           of quality for cost, instead
                                                           of the decision's
``prefer``             ``x-router-prefer: latency``        candidates by observed latency
                                                           (``cost``: by estimated cost)
=====================  ==================================  ============================

A header wins over the body field of the same name. The body fields are taken out of the
body before it goes upstream. The narrowing applies to every model the request may reach:
the candidates, the models' ``fallbacks`` and the decision's ``context_fallbacks``; a
request that leaves no candidate is refused (400, ``param`` naming the preference).

The policy (``preferences:``, and per client key ``preferences.per_client``) says which
preferences a caller may set (``allow``: others are refused, 400
``preference_not_allowed``) and holds ``cost_weight`` and ``max_cost_per_1k`` within
bounds (a value outside is moved to the bound, and the plan says so). What was asked and
what it did show in ``POST /v1/route`` and ``router-proxy explain`` (``preferences``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from router_proxy.config.conversations import (
    PREFERENCE_NAMES,
    Bounds,
    PreferencePolicy,
    PreferencesConfig,
)
from router_proxy.config.schema import ModelConfig
from router_proxy.context import Preferences, RequestContext
from router_proxy.engine.auth import client_id
from router_proxy.errors import InvalidRequestError
from router_proxy.pipeline import RoutePlan
from router_proxy.resilience.latency_tracker import LatencyTracker
from router_proxy.selection.learned import LearnedSelector

HEADERS = {name: "x-router-" + name.replace("_", "-") for name in PREFERENCE_NAMES}
_NAMES, _HEADER_NAMES = frozenset(PREFERENCE_NAMES), frozenset(HEADERS.values())
PREFER = ("latency", "cost")
EXPECTED_OUTPUT_TOKENS = 256  # as the cheapest selector estimates a request's cost


def _invalid(name: str, message: str, code: str | None = None) -> InvalidRequestError:
    return InvalidRequestError(f"{name}: {message}", param=name, code=code)


def _asked(ctx: RequestContext) -> dict[str, Any]:
    """Each preference the request sets: its header, else its body field."""
    body = ctx.native_body if ctx.native_body is not None else ctx.raw_body
    asked: dict[str, Any] = {name: body[name] for name in PREFERENCE_NAMES if name in body}
    headers = ctx.headers
    for name, header in HEADERS.items():
        value = headers.get(header)
        if value is not None:
            asked[name] = value
    return asked


def _without_preferences(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k not in PREFERENCE_NAMES}


class PreferencePolicies:
    """Reads and applies a request's preferences under a config's policy."""

    def __init__(
        self,
        config: PreferencesConfig,
        models: Mapping[str, ModelConfig],
        latency: LatencyTracker | None = None,
    ) -> None:
        self.default: PreferencePolicy = config
        self.per_client = {client_id(p.key.get_secret_value()): p for p in config.per_client}
        self.models = models
        self.latency = latency or LatencyTracker()

    def read(self, ctx: RequestContext, client: str) -> Preferences | None:
        """The request's preferences under ``client``'s policy (None: it set none); the
        body fields are taken out of what goes upstream. 400 for a preference the policy
        forbids, an unknown model, or a value that is not one."""
        body = ctx.native_body if ctx.native_body is not None else ctx.raw_body
        if _NAMES.isdisjoint(body) and _HEADER_NAMES.isdisjoint(ctx.headers):
            return None  # the common case: a set lookup per key
        asked = _asked(ctx)
        policy = self.per_client.get(client, self.default)
        for name in asked:
            if name not in policy.allow:
                raise _invalid(
                    name,
                    "this API key may not set it (the gateway's policy does not allow it)",
                    "preference_not_allowed",
                )
        ctx.raw_body = _without_preferences(ctx.raw_body)
        if ctx.native_body is not None:
            ctx.native_body = _without_preferences(ctx.native_body)
        capped: list[str] = []
        allowed = asked.get("allowed_models")
        cost_weight = self._number(asked, "cost_weight", policy.cost_weight, capped, zero=True)
        per_1k = self._number(asked, "max_cost_per_1k", policy.max_cost_per_1k, capped)
        return Preferences(
            allowed=self._models(asked, "allowed_models") if allowed is not None else None,
            excluded=self._models(asked, "excluded_models"),
            cost_weight=cost_weight,
            max_cost_per_1k=per_1k,
            prefer=_prefer(asked.get("prefer")),
            capped=tuple(capped),
        )

    def _models(self, asked: dict[str, Any], name: str) -> tuple[str, ...]:
        value = asked.get(name)
        if value is None:
            return ()
        if isinstance(value, str):
            names = [part.strip() for part in value.split(",") if part.strip()]
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            names = value
        else:
            raise _invalid(name, "a list of model names (a header: comma-separated)")
        unknown = [n for n in names if n not in self.models]
        if unknown:
            raise _invalid(name, f"unknown model '{unknown[0]}' (GET /v1/models lists them)")
        return tuple(dict.fromkeys(names))

    @staticmethod
    def _number(
        asked: dict[str, Any], name: str, bounds: Bounds, capped: list[str], *, zero: bool = False
    ) -> float | None:
        value = asked.get(name)
        if value is None:
            return None
        try:
            number = float(value) if not isinstance(value, bool) else math.nan
        except (TypeError, ValueError):
            number = math.nan
        if not math.isfinite(number) or number < 0 or (number == 0 and not zero):
            least = "0 or more" if zero else "more than 0"
            raise _invalid(name, f"a number, {least} (got {value!r})")
        held = min(max(number, bounds.min or 0.0), math.inf if bounds.max is None else bounds.max)
        if held != number:
            capped.append(f"{name} {number:g} -> {held:g} (the policy's bounds)")
        return held

    def permits(self, preferences: Preferences, model: str) -> bool:
        """Whether the request may reach ``model`` at all."""
        if preferences.allowed is not None and model not in preferences.allowed:
            return False
        if model in preferences.excluded:
            return False
        ceiling = preferences.max_cost_per_1k
        if ceiling is None:
            return True
        cost = self.models[model].cost
        return max(cost.input_per_mtok, cost.output_per_mtok) / 1000 <= ceiling

    def permitted(self, ctx: RequestContext) -> Callable[[str], bool] | None:
        """The request's ``permits``, or None when it narrows nothing."""
        preferences = ctx.preferences
        if preferences is None or not _narrows(preferences):
            return None
        return lambda model: self.permits(preferences, model)

    def apply(self, plan: RoutePlan, ctx: RequestContext) -> RoutePlan:
        """``plan`` narrowed and re-ranked as the request asks (the plan shows it)."""
        preferences = ctx.preferences
        if preferences is None:
            return plan
        kept = [m for m in plan.candidates if self.permits(preferences, m)]
        removed = {m: self._why_not(preferences, m) for m in plan.candidates if m not in kept}
        if not kept:
            raise _invalid(
                _narrowest(preferences),
                f"no candidate of decision '{plan.decision}' is left "
                f"({', '.join(f'{m}: {why}' for m, why in removed.items())})",
                "no_candidate_left",
            )
        if preferences.prefer == "latency":
            kept.sort(key=self._latency_key)
        elif preferences.prefer == "cost":
            prompt_tokens = len(ctx.text("all")) / 4
            kept.sort(key=lambda m: self._cost(m, prompt_tokens))
        shown: dict[str, Any] = {"asked": preferences.to_dict(), "removed": removed or None}
        if preferences.cost_weight is not None:
            shown["cost_weight_applies"] = plan.via != "model" and _learned(plan)
        return replace(plan, model=kept[0], candidates=tuple(kept), preferences=shown)

    def _why_not(self, preferences: Preferences, model: str) -> str:
        if preferences.allowed is not None and model not in preferences.allowed:
            return "not in allowed_models"
        if model in preferences.excluded:
            return "in excluded_models"
        return "over max_cost_per_1k"

    def _latency_key(self, model: str) -> float:
        average = self.latency.average(model)
        return math.inf if average is None else average  # unmeasured last, in their order

    def _cost(self, model: str, prompt_tokens: float) -> float:
        price = self.models[model].cost
        return prompt_tokens * price.input_per_mtok + EXPECTED_OUTPUT_TOKENS * price.output_per_mtok


def _prefer(value: Any) -> Any:
    if value is None:
        return None
    if value not in PREFER:
        raise _invalid("prefer", f"one of {', '.join(PREFER)} (got {value!r})")
    return value


def _narrows(preferences: Preferences) -> bool:
    return (
        preferences.allowed is not None
        or bool(preferences.excluded)
        or preferences.max_cost_per_1k is not None
    )


def _narrowest(preferences: Preferences) -> str:
    if preferences.allowed is not None:
        return "allowed_models"
    return "excluded_models" if preferences.excluded else "max_cost_per_1k"


def _learned(plan: RoutePlan) -> bool:
    """Whether the matched decision's selector takes a cost_weight (a learned one)."""
    return bool(plan.tried) and isinstance(plan.tried[-1].selector, LearnedSelector)
