"""Which failures are worth another try, and how long to wait before it.

- retry the same model: connect errors and resets, 429, 502, 503, 504 (the upstream
  says "not now", or never saw the request);
- fall back to the next model: those, and every other upstream failure (500, timeouts,
  a malformed reply, our own key refused);
- neither: the client's own mistakes (400, 404, 413, 422 from the upstream): another
  model would refuse the same request, so the client hears it at once.
"""

from __future__ import annotations

import email.utils
import random
import time
from enum import Enum

from router_proxy.errors import (
    GatewayError,
    UpstreamError,
    UpstreamStatusError,
    UpstreamTimeoutError,
)
from router_proxy.resilience.config import RetryConfig

RETRY_STATUSES = frozenset({429, 502, 503, 504})
CLIENT_STATUSES = frozenset({400, 404, 413, 422})


class Verdict(Enum):
    RETRY = "retry"  # same model again (after a backoff), then fall back
    FALLBACK = "fallback"  # next model at once
    FINAL = "final"  # the client's error: answer it now


def classify(error: GatewayError) -> Verdict:
    if isinstance(error, UpstreamStatusError):
        if error.upstream_status in CLIENT_STATUSES:
            return Verdict.FINAL
        return Verdict.RETRY if error.upstream_status in RETRY_STATUSES else Verdict.FALLBACK
    if isinstance(error, UpstreamTimeoutError):
        return Verdict.FALLBACK  # a hung model would hang again: spend the time elsewhere
    if isinstance(error, UpstreamError):
        return Verdict.RETRY if error.transport else Verdict.FALLBACK
    return Verdict.FINAL


def retry_after_seconds(error: GatewayError, now: float | None = None) -> float | None:
    """The upstream's ``Retry-After`` (seconds or an HTTP date), if it sent one."""
    value = error.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def backoff(
    retry: int, config: RetryConfig, retry_after: float | None, rng: random.Random
) -> float:
    """Seconds before retry number ``retry`` (0-based): the upstream's Retry-After when
    it gave one, else exponential with full jitter (spreads replicas' retries apart)."""
    if retry_after is not None:
        return retry_after
    ceiling = min(config.backoff_max, config.backoff_initial * (2**retry))
    return rng.uniform(0, ceiling)
