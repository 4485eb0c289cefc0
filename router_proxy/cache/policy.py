"""What a policy and a request say about caching one request: which decisions cache, with
what fingerprint, and whether this request may be served from the cache or stored."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from router_proxy.cache.config import DecisionCacheConfig
from router_proxy.cache.key import fingerprint
from router_proxy.config.schema import Config, DecisionConfig


@dataclass(frozen=True, slots=True)
class DecisionPolicy:
    config: DecisionCacheConfig
    fingerprint: str  # what answers the decision: part of every key (key.answer_key)
    # Seconds identical requests wait for one in flight (coalesce.py); None: they do not.
    coalesce_wait: float | None = None

    @property
    def semantic(self) -> bool:
        return self.config.mode == "semantic"

    def refuses(self, body: Mapping[str, Any]) -> str | None:
        """Why a request with ``body`` is not cached, or None. Sampled answers (temperature
        above 0) and several choices (``n`` > 1) only where the policy allows them."""
        temperature = body.get("temperature")
        if self.config.temperature == "zero" and temperature not in (None, 0):
            return "temperature"
        n = body.get("n")
        if not self.config.multiple_choices and n not in (None, 1):
            return "n"
        return None


def decision_policies(config: Config) -> dict[str, DecisionPolicy]:
    """The decisions that cache, by name (empty: no cache, no work per request)."""
    return {
        d.name: DecisionPolicy(d.cache, _decision_fingerprint(config, d), _coalesce_wait(config, d))
        for d in config.decisions
        if d.cache.enabled
    }


def _coalesce_wait(config: Config, decision: DecisionConfig) -> float | None:
    """``coalesce_wait``, cut to the longest total timeout of the decision's models: a
    leader's call ends by then (answered or failed), so waiting longer helps nobody."""
    if not decision.cache.coalesce:
        return None
    wait = decision.cache.coalesce_wait
    models = [config.models[m] for m in decision.route.candidates if m in config.models]
    if models:
        wait = min(wait, max(m.timeouts.total for m in models))
    return wait


def _decision_fingerprint(config: Config, decision: DecisionConfig) -> str:
    models = {
        name: [config.models[name].provider, config.upstream_name(name)]
        for name in decision.route.candidates
        if name in config.models
    }
    route = decision.route.model_dump(mode="json")
    plugins = [plugin.model_dump(mode="json") for plugin in decision.plugins]
    return fingerprint(decision.name, route, plugins, models)


@dataclass(frozen=True, slots=True)
class Directives:
    """The request's own say: ``cache-control: no-cache`` (do not answer from the cache)
    and ``no-store`` (do not keep this answer); ``x-router-cache`` takes the same words,
    and ``off`` for both."""

    lookup: bool = True
    store: bool = True


def directives_of(headers: Mapping[str, str]) -> Directives:
    words: set[str] = set()
    for name in ("cache-control", "x-router-cache"):
        value = headers.get(name)
        if value:
            words.update(w.strip().lower() for w in value.split(","))
    if not words:
        return Directives()
    off = "off" in words
    return Directives(
        lookup=not (off or "no-cache" in words), store=not (off or "no-store" in words)
    )
