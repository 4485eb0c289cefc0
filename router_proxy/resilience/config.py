"""The YAML contract of resilience: per-model timeouts, the retry and fallback budget,
circuit breakers, rate limits and budgets, and where shared state lives."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from router_proxy.config.base import StrictModel


class TimeoutsConfig(StrictModel):
    """Per model. For a non-streaming call most upstreams send nothing until the whole
    answer is ready, so ``first_byte`` bounds generation there; for a stream it bounds
    the wait for the first event (and every later gap between events)."""

    connect: float | None = Field(
        default=None, gt=0, description="seconds to connect; default: the provider's"
    )
    first_byte: float | None = Field(
        default=None, gt=0, description="seconds until the answer starts; default: total"
    )
    total: float = Field(default=120.0, gt=0, description="seconds for the whole call")

    @model_validator(mode="after")
    def _ordered(self) -> TimeoutsConfig:
        if self.first_byte is not None and self.first_byte > self.total:
            raise ValueError("first_byte must not exceed total")
        return self

    @property
    def idle(self) -> float:
        """The wait for the first byte and, on a stream, for each next event."""
        return self.first_byte if self.first_byte is not None else self.total

    def within(self, left: float | None) -> TimeoutsConfig:
        """These timeouts cut to a request deadline ``left`` seconds away (None: none)."""
        if left is None or left >= self.total:
            return self
        return TimeoutsConfig.model_construct(
            connect=self.connect, first_byte=min(self.idle, left), total=left
        )


class RetryConfig(StrictModel):
    attempts_per_model: int = Field(
        default=2, ge=1, description="tries of one model before falling back (1 = no retry)"
    )
    max_attempts: int = Field(
        default=4, ge=1, description="tries per request over all models: the retry budget"
    )
    backoff_initial: float = Field(default=0.1, ge=0, description="seconds before retry 1")
    backoff_max: float = Field(default=2.0, ge=0, description="cap of one backoff wait")
    max_retry_after: float = Field(
        default=5.0,
        ge=0,
        description="an upstream's Retry-After is honoured up to this many seconds; "
        "a longer one moves on to the next candidate instead",
    )
    deadline: float | None = Field(
        default=None,
        gt=0,
        description="seconds for the whole request over all attempts; default: none "
        "beyond each model's timeouts",
    )


class BreakerConfig(StrictModel):
    """Opens when, within ``window`` seconds, at least ``failures`` calls failed and they
    were at least ``failure_rate`` of the calls, or the last ``failures`` calls all failed."""

    enabled: bool = True
    failures: int = Field(
        default=5,
        ge=1,
        description="failed calls within `window` needed to open it (the least evidence)",
    )
    failure_rate: float = Field(
        default=0.25,
        gt=0,
        le=1,
        description="share of the window's calls that failed that opens it (with at least "
        "`failures` failures); the last `failures` calls all failing opens it whatever the "
        "share",
    )
    window: float = Field(default=30.0, gt=0, description="seconds calls are counted over")
    cooldown: float = Field(
        default=30.0, gt=0, description="seconds open before one probe call (half-open)"
    )


class ResilienceConfig(StrictModel):
    retries: RetryConfig = Field(default_factory=RetryConfig)
    breaker: BreakerConfig = Field(default_factory=BreakerConfig)


class LimitSet(StrictModel):
    requests_per_minute: int | None = Field(default=None, ge=1)
    tokens_per_minute: int | None = Field(
        default=None, ge=1, description="prompt + completion tokens reported by upstreams"
    )
    dollars_per_day: float | None = Field(
        default=None, gt=0, description="US$ from usage and the models' cost table"
    )

    @property
    def empty(self) -> bool:
        return (
            self.requests_per_minute is None
            and self.tokens_per_minute is None
            and self.dollars_per_day is None
        )


class LimitsConfig(StrictModel):
    """Each client key gets its own ``per_client`` allowance (requests with no key, when
    ``server.api_keys`` is empty, share one); ``per_model`` caps everyone's use of a model."""

    per_client: LimitSet = Field(default_factory=LimitSet)
    per_model: dict[str, LimitSet] = Field(
        default_factory=dict, description="model name -> its limits"
    )


class StateConfig(StrictModel):
    backend: Literal["memory", "redis"] = Field(
        default="memory",
        description="memory: this process only; redis: shared by every worker and replica",
    )
    url: str | None = Field(
        default=None, pattern=r"^rediss?://", description="e.g. redis://redis:6379/0"
    )
    key_prefix: str = Field(default="router-proxy", min_length=1)
    sync_interval: float = Field(
        default=1.0, gt=0, description="seconds between syncs of breakers and latencies"
    )
    timeout: float = Field(
        default=0.25, gt=0, description="seconds a Redis call may take before it counts as down"
    )

    @model_validator(mode="after")
    def _url_for_redis(self) -> StateConfig:
        if self.backend == "redis" and self.url is None:
            raise ValueError("backend redis needs a url")
        return self
