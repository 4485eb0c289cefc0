"""The YAML contract of conversations and per-request preferences: session affinity
(``affinity:``, and each decision's ``affinity`` mode) and what callers may ask of
routing (``preferences:``). Gathered into ``Config`` by ``schema.py``."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, SecretStr, model_validator

from router_proxy.config.base import StrictModel


class AffinityConfig(StrictModel):
    """Session affinity: the turns of one conversation keep the model that answered it,
    so its upstream prompt cache stays warm and its behaviour consistent."""

    enabled: bool = Field(
        default=False, description="keep each conversation on the model that answered it"
    )
    header: str = Field(
        default="x-session-id",
        pattern=r"^[A-Za-z0-9-]+$",
        description="the request header that names a conversation (case-insensitive)",
    )
    from_prefix: bool = Field(
        default=True,
        description="without that header, a conversation is named by a hash of its system "
        "prompt and first user turn",
    )
    ttl: float = Field(
        default=3600.0,
        gt=0,
        description="seconds a binding lives after its conversation's last turn",
    )
    max_sessions: int = Field(
        default=100_000,
        ge=1,
        description="bindings each replica keeps in memory (the least recently used go first; "
        "with state redis, Redis holds them all)",
    )


PreferenceName = Literal[
    "allowed_models", "excluded_models", "cost_weight", "max_cost_per_1k", "prefer"
]
PREFERENCE_NAMES: tuple[PreferenceName, ...] = (
    "allowed_models",
    "excluded_models",
    "cost_weight",
    "max_cost_per_1k",
    "prefer",
)


class Bounds(StrictModel):
    min: float | None = Field(default=None, ge=0)
    max: float | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> Bounds:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self


class PreferencePolicy(StrictModel):
    allow: list[PreferenceName] = Field(
        default_factory=lambda: list(PREFERENCE_NAMES),
        description="the preferences a caller may set (body field or x-router-* header); "
        "a request setting another is refused (400)",
    )
    cost_weight: Bounds = Field(
        default_factory=Bounds, description="a caller's cost_weight is held within these"
    )
    max_cost_per_1k: Bounds = Field(
        default_factory=Bounds, description="a caller's max_cost_per_1k is held within these"
    )


class ClientPreferencePolicy(PreferencePolicy):
    key: SecretStr = Field(description="the client key (one of server.api_keys) it applies to")


class PreferencesConfig(PreferencePolicy):
    """What callers may ask of routing per request, and within which bounds."""

    per_client: list[ClientPreferencePolicy] = Field(
        default_factory=list,
        description="a client key listed here gets its own policy instead of the one above",
    )


def _affinity_mode(value: Any) -> Any:
    # YAML reads a bare `off` / `on` as a boolean.
    if isinstance(value, bool):
        return "sticky" if value else "off"
    return value


AffinityMode = Annotated[Literal["decision", "sticky", "off"], BeforeValidator(_affinity_mode)]
