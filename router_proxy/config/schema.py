"""The YAML contract. ``router-proxy schema`` prints it as JSON Schema.

Provider and signal configs are defined beside their implementations and gathered here
from the registries, so adding a type never touches this file.
"""

from __future__ import annotations

import functools
import operator
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import (
    Field,
    SecretStr,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from router_proxy.cache.config import CacheConfig, DecisionCacheConfig
from router_proxy.config.base import ProviderConfigBase, SignalConfigBase, StrictModel
from router_proxy.config.conversations import AffinityConfig, AffinityMode, PreferencesConfig
from router_proxy.config.shadow import ShadowConfig
from router_proxy.config.tracing import TracingConfig
from router_proxy.embeddings.config import EmbeddingsConfig
from router_proxy.plugins.registry import plugin_item_model
from router_proxy.providers.registry import PROVIDER_TYPES
from router_proxy.records.config import RecordsConfig
from router_proxy.resilience.config import (
    LimitsConfig,
    ResilienceConfig,
    StateConfig,
    TimeoutsConfig,
)
from router_proxy.signals.registry import SIGNAL_TYPES

NAME_PATTERN = r"^[A-Za-z0-9_.:/@-]+$"


def tagged_union(types: list[type[Any]]) -> Any:
    """``A | B | ...`` discriminated by ``type:``; built from a registry at import."""
    union = functools.reduce(operator.or_, types)
    return Annotated[union, Field(discriminator="type")] if len(types) > 1 else union


if TYPE_CHECKING:
    ProviderConfig = ProviderConfigBase
    SignalConfig = SignalConfigBase
    PluginItem = StrictModel
else:
    PluginItem = plugin_item_model()
    ProviderConfig = tagged_union([p.config_model for p in PROVIDER_TYPES.values()])
    SignalConfig = tagged_union([s.config_model for s in SIGNAL_TYPES.values()])


class CorsConfig(StrictModel):
    """Starlette's CORSMiddleware settings, for browsers calling the gateway directly."""

    allow_origins: list[str] = Field(
        min_length=1, description='origins allowed, e.g. ["https://app.example.com"]; "*" = any'
    )
    allow_methods: list[str] = Field(default_factory=lambda: ["GET", "POST"])
    allow_headers: list[str] = Field(
        default_factory=lambda: ["authorization", "content-type", "x-request-id"]
    )
    allow_credentials: bool = False
    expose_headers: list[str] = Field(
        default_factory=lambda: [
            "x-router-decision",
            "x-router-model",
            "x-router-request-id",
            "x-router-cache",
        ],
        description="response headers browser code may read",
    )
    max_age: int = Field(default=600, ge=0, description="seconds browsers cache a preflight")

    @model_validator(mode="after")
    def _no_credentials_for_any_origin(self) -> CorsConfig:
        if self.allow_credentials and "*" in self.allow_origins:
            raise ValueError(
                "allow_credentials with allow_origins '*' would let any web site send "
                "requests with a browser's credentials; list the origins"
            )
        return self


class ServerConfig(StrictModel):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    api_keys: list[SecretStr] = Field(
        default_factory=list,
        description="client keys accepted as `Authorization: Bearer KEY`; empty = no auth",
    )
    admin_keys: list[SecretStr] = Field(
        default_factory=list,
        description="keys for /admin endpoints (Bearer); empty = admin endpoints disabled",
    )
    metrics_keys: list[SecretStr] = Field(
        default_factory=list,
        description="keys a Prometheus scrape of /metrics must send (Bearer); empty = "
        "/metrics is open, for an in-cluster scrape (keep it off the public ingress)",
    )
    watch_config: bool = Field(
        default=True, description="reload the policy file when it changes on disk"
    )
    max_body_bytes: int = Field(
        default=8 * 1024 * 1024, ge=1024, description="larger request bodies get 413"
    )
    max_header_bytes: int = Field(
        default=16 * 1024,
        ge=1024,
        description="request line plus headers; larger gets 431 and the connection closed "
        "(read at start: a change needs a restart)",
    )
    header_timeout: float = Field(
        default=10.0,
        gt=0,
        description="seconds a client has to send a request's line and headers, from its "
        "connection or the request's first byte; slower gets 408 and the connection closed "
        "(a connection that sends nothing is closed; read at start: a change needs a restart)",
    )
    body_timeout: float = Field(
        default=30.0,
        gt=0,
        description="seconds a client has to send a request's whole body after its "
        "headers; slower gets 408 and the connection closed (read at start: a change "
        "needs a restart)",
    )
    max_messages: int = Field(
        default=2048, ge=1, description="more `messages` in a chat request get 400"
    )
    cors: CorsConfig | None = Field(
        default=None,
        description="browser cross-origin access; absent = no CORS headers at all "
        "(read at start: a change needs a restart)",
    )
    log_requests: bool = Field(default=True, description="one JSON log line per request")
    shutdown_grace: float = Field(
        default=30.0,
        ge=0,
        description="seconds SIGTERM waits for in-flight requests and streams to finish",
    )
    cpu_workers: int = Field(
        default=2,
        ge=1,
        le=64,
        description="threads for CPU-heavy routing work on long text (PII scans, "
        "redaction), so that it never holds the event loop every client shares",
    )
    drain_delay: float = Field(
        default=0.0,
        ge=0,
        description="seconds SIGTERM keeps accepting requests, with /ready answering 503, "
        "before the shutdown_grace drain: time for a load balancer to stop sending here "
        "(a second SIGTERM goes at once; read at start: a change needs a restart)",
    )


class RoutingConfig(StrictModel):
    """How long routing may take, and which work leaves the event loop."""

    budget_ms: float = Field(
        default=250.0,
        gt=0,
        description="a signal still computing this long after routing began counts as "
        "not fired ('unknown'; the log line's signals_timed_out names it)",
    )
    offload_chars: int = Field(
        default=8192,
        ge=0,
        description="heavy signals and plugins (pii, redact_pii) on text longer than this "
        "run in the server.cpu_workers threads; shorter text is cheaper to do inline",
    )


class CostConfig(StrictModel):
    input_per_mtok: float = Field(default=0.0, ge=0, description="US$ per 1M prompt tokens")
    output_per_mtok: float = Field(default=0.0, ge=0, description="US$ per 1M completion tokens")

    def dollars(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (
            prompt_tokens * self.input_per_mtok + completion_tokens * self.output_per_mtok
        ) / 1e6


class ModelConfig(StrictModel):
    provider: str = Field(description="a key of `providers`")
    upstream_model: str | None = Field(
        default=None, description="the name the provider knows; defaults to this model's key"
    )
    cost: CostConfig = Field(default_factory=CostConfig)
    timeouts: TimeoutsConfig = Field(default_factory=TimeoutsConfig)
    fallbacks: list[str] = Field(
        default_factory=list,
        description="models tried next when this one fails, before the decision's next "
        "candidate (also for requests that name this model directly)",
    )
    context_window: int | None = Field(
        default=None,
        ge=1,
        description="tokens the model takes, prompt and answer together; a request whose "
        "prompt (counted offline) and requested output cannot fit skips this model",
    )
    max_output_tokens: int | None = Field(
        default=None,
        ge=1,
        description="the most tokens the model writes in one answer; a request asking for "
        "more (max_tokens / max_completion_tokens) skips this model",
    )
    description: str = ""

    @model_validator(mode="after")
    def _output_within_window(self) -> ModelConfig:
        window, output = self.context_window, self.max_output_tokens
        if window is not None and output is not None and output > window:
            raise ValueError(
                f"max_output_tokens ({output}) is larger than context_window ({window})"
            )
        return self


WhenExpr = Annotated[
    Any,
    WithJsonSchema(
        {
            "description": "true, a signal name, {signal: value}, or {all|any: [...]}, {not: ...}",
            "anyOf": [
                {"type": "boolean"},
                {"type": "string"},
                {"type": "object", "minProperties": 1, "maxProperties": 1},
            ],
        }
    ),
]


class RouteConfig(StrictModel):
    # (params before candidates: the candidates' check reads them)
    algorithm: str = Field(default="static", description="selection algorithm")
    params: dict[str, Any] = Field(default_factory=dict, description="the algorithm's params")
    candidates: list[str] = Field(
        default_factory=list,
        validate_default=True,
        description="model names, best first (cascade and aggregate name theirs in params)",
    )

    @field_validator("candidates")
    @classmethod
    def _some_candidates(cls, value: list[str], info: ValidationInfo) -> list[str]:
        # Only an algorithm that names its models in params (cascade, aggregate) goes
        # without; config/references.py checks which one it is.
        if not value and not info.data.get("params"):
            raise ValueError("List should have at least 1 item after validation, not 0")
        return value


class DecisionConfig(StrictModel):
    name: str = Field(min_length=1, pattern=NAME_PATTERN)
    description: str = ""
    priority: int = Field(default=0, description="higher is tried first; ties keep file order")
    when: WhenExpr
    route: RouteConfig
    plugins: list[PluginItem] = Field(
        default_factory=list, description="edits to the request, applied after selection"
    )
    affinity: AffinityMode = Field(
        default="sticky",
        description="with affinity enabled: sticky (a conversation keeps its model while it "
        "is one of this decision's candidates, whichever decision bound it), decision (it "
        "is re-routed when it comes from another decision), off (every turn routed on its "
        "own)",
    )
    context_fallbacks: list[str] = Field(
        default_factory=list,
        description="models tried, in order, after the candidates when a request does not "
        "fit a candidate's context window (counted before the call, or the upstream said "
        "so); each is tried only if the request fits it",
    )
    cache: DecisionCacheConfig = Field(
        default_factory=DecisionCacheConfig,
        description="answer repeated requests from a cache (default: off)",
    )
    shadow: ShadowConfig | None = Field(
        default=None,
        description="also send a share of answered requests to other models, in the "
        "background after the answer, and record their answers (label-free retraining; "
        "needs the decision's records to keep prompt and answer)",
    )


class Config(StrictModel):
    server: ServerConfig = Field(default_factory=ServerConfig)
    embeddings: EmbeddingsConfig = Field(
        default_factory=EmbeddingsConfig,
        description="the encoder shared by embedding signals and learned selectors",
    )
    providers: dict[str, ProviderConfig] = Field(min_length=1)
    models: dict[str, ModelConfig] = Field(min_length=1)
    signals: list[SignalConfig] = Field(default_factory=list)
    decisions: list[DecisionConfig] = Field(min_length=1)
    routing: RoutingConfig = Field(
        default_factory=RoutingConfig, description="routing's time budget, off-loop work"
    )
    resilience: ResilienceConfig = Field(
        default_factory=ResilienceConfig, description="retries, fallback budget, breakers"
    )
    limits: LimitsConfig = Field(
        default_factory=LimitsConfig, description="rate limits and budgets (429 when over)"
    )
    preferences: PreferencesConfig = Field(
        default_factory=PreferencesConfig,
        description="per-request preferences callers may set (allowed or excluded models, "
        "cost, latency), per client key",
    )
    affinity: AffinityConfig = Field(
        default_factory=AffinityConfig,
        description="session affinity: a conversation keeps its model across turns",
    )
    state: StateConfig = Field(
        default_factory=StateConfig,
        description="where breakers, latencies, limit counters and session bindings live "
        "(memory | redis)",
    )
    cache: CacheConfig = Field(
        default_factory=CacheConfig,
        description="the response cache's store (decisions turn caching on)",
    )
    records: RecordsConfig | None = Field(
        default=None,
        description="decision records: sampled requests written to a JSONL file or "
        "PostgreSQL (absent: nothing recorded)",
    )
    tracing: TracingConfig | None = Field(
        default=None,
        description="OpenTelemetry spans over OTLP (default: off, and nothing imported)",
    )

    def upstream_name(self, model: str) -> str:
        return self.models[model].upstream_model or model
