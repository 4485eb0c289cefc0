"""The YAML contract of the response cache: ``cache:`` on a decision (what is cached and
for how long), and the top-level ``cache:`` section (how big the memory store may grow).

Everything defaults to off: a policy caches only the decisions that say so.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from router_proxy.config.base import StrictModel

CacheMode = Literal["off", "exact", "semantic"]

# Calibrated similarity (embeddings/calibration.py) a paraphrase must reach to be served
# another prompt's answer; picked from benchmarks/cache/ (false hits under 1%).
DEFAULT_SEMANTIC_THRESHOLD = 3.0

SCOPE_HELP = (
    "whose answers a request may be served: `client` (the client key; requests without "
    "keys share one scope), or `header:NAME` (the client key and that request header's "
    "value, e.g. `header:x-tenant`; a request without the header is not cached)"
)


class DecisionCacheConfig(StrictModel):
    """``cache:`` on a decision."""

    mode: CacheMode = Field(
        default="off",
        description="`exact`: the same request (same endpoint, decision, body and tenant) "
        "gets the stored answer; `semantic`: also a paraphrase of the last user turn in the "
        "same conversation; `off`: nothing is cached",
    )
    ttl: float = Field(default=3600.0, gt=0, description="seconds an answer is kept")
    threshold: float = Field(
        default=DEFAULT_SEMANTIC_THRESHOLD,
        description="`semantic`: calibrated similarity of the last user turns at or above "
        "which a paraphrase is a hit (0 = unrelated, 1 = same subject; paraphrases score 2+)",
    )
    scope: str = Field(
        default="client", pattern=r"^(client|header:[a-z0-9-]+)$", description=SCOPE_HELP
    )
    temperature: Literal["zero", "any"] = Field(
        default="zero",
        description="`zero`: only requests whose temperature is 0 or absent are cached; "
        "`any`: sampled answers too (a hit then always repeats the first sample)",
    )
    multiple_choices: bool = Field(
        default=False, description="cache requests asking for several choices (`n` > 1)"
    )
    coalesce: bool = Field(
        default=True,
        description="identical requests (same exact key) that arrive while the first one's "
        "model call is in flight wait for its answer instead of calling a model (this "
        "process only; a paraphrase does not wait)",
    )
    coalesce_wait: float = Field(
        default=30.0,
        gt=0,
        description="seconds after the first request's start that the others wait at most "
        "(then each calls a model itself); cut to the decision's longest model timeout",
    )

    @property
    def enabled(self) -> bool:
        return self.mode != "off"

    @property
    def header(self) -> str | None:
        """The request header that scopes answers, if ``scope`` names one."""
        return self.scope.partition(":")[2] or None


class CacheConfig(StrictModel):
    """The top-level ``cache:`` section: the store's bounds. Answers live in memory (this
    process) or, with ``state.backend: redis``, in Redis, shared by every replica."""

    max_bytes: int = Field(
        default=256 * 1024 * 1024,
        ge=1024,
        description="memory store: answers kept in all, least recently used dropped first",
    )
    max_entry_bytes: int = Field(
        default=1024 * 1024, ge=256, description="a larger answer is not stored"
    )
    semantic_max_entries: int = Field(
        default=200_000,
        ge=1,
        description="semantic index: most prompts kept in all, per process (~0.9 KB each "
        "with the static encoder; least recently used conversations go first)",
    )
