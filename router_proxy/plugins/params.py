"""``{params: {set: {...}, default: {...}, cap: {...}}}``: control sampling parameters.

``set`` overwrites what the client sent, ``default`` fills in what it left out, ``cap``
lowers numbers above the cap (and sets the cap where the client sent nothing, so an
unbounded ``max_tokens`` is bounded too). Capping ``max_tokens`` also caps
``max_completion_tokens``, its newer name."""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from router_proxy.config.base import StrictModel
from router_proxy.context import RequestContext
from router_proxy.plugins.base import Body, Plugin

_ALIASES = {"max_tokens": ("max_tokens", "max_completion_tokens")}
_PROTECTED = frozenset({"model", "messages", "stream"})


class ParamsOptions(StrictModel):
    set: dict[str, Any] = Field(default_factory=dict)
    default: dict[str, Any] = Field(default_factory=dict)
    cap: dict[str, float] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _sane(self) -> ParamsOptions:
        keys = set(self.set) | set(self.default) | set(self.cap)
        if not keys:
            raise ValueError("params needs at least one of `set`, `default`, `cap`")
        if keys & _PROTECTED:
            raise ValueError(f"params cannot change {sorted(keys & _PROTECTED)}")
        return self


class ParamsPlugin(Plugin):
    name = "params"
    config_model = ParamsOptions
    config: ParamsOptions

    def apply(self, body: Body, ctx: RequestContext) -> Body:
        out = dict(body)
        for key, value in self.config.default.items():
            out.setdefault(key, value)
        out.update(self.config.set)
        for key, limit in self.config.cap.items():
            names = [n for n in _ALIASES.get(key, (key,)) if n in out]
            for name in names or [key]:
                current = out.get(name)
                if not isinstance(current, int | float) or current > limit:
                    out[name] = int(limit) if float(limit).is_integer() else limit
        return out
