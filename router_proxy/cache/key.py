"""Cache keys: a fingerprint of everything that shapes an answer, and whose it is.

The exact key hashes, with the keys of every object sorted:
- the API surface (chat, responses, messages, completions, embeddings) and whether the
  answer is streamed (a stream and a whole answer are stored apart: they differ in bytes);
- the decision and its policy fingerprint (candidates, their providers and upstream
  names, algorithm, params, plugins): a reload that changes what answers a decision starts
  it afresh;
- the client's whole body in its own wire format (system prompt, messages, tools and
  tool_choice, response_format, sampling parameters, stop, seed, max_tokens,
  stream_options, unknown parameters...), except ``IGNORED_FIELDS``.

The tenant (``tenant_of``) is part of the key too, and the first part of its storage
name, so that one tenant's entries can be purged and never served to another.

The context key (semantic cache) hashes the same with the last user turn's content left
out: two requests that differ only there share a context and may share an answer.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from router_proxy.cache.config import DecisionCacheConfig

# Fields that do not change the answer: ``model`` (the routing outcome is in the key
# instead, so "auto" and the decision's name share answers), ``user`` (an end-user id for
# the provider's abuse monitoring; personal content is in the messages, and tenants are
# kept apart by the scope).
IGNORED_FIELDS = frozenset({"model", "user"})
_SORTED = orjson.OPT_SORT_KEYS
_BLANK = "\x00last-user-turn\x00"


def fingerprint(*parts: object) -> str:
    """A short stable digest of JSON-able ``parts``."""
    return hashlib.blake2b(orjson.dumps(parts, option=_SORTED), digest_size=16).hexdigest()


def answer_key(
    tenant: str, surface: str, stream: bool, policy: str, body: Mapping[str, Any]
) -> str:
    """The exact key: ``policy`` is the decision's fingerprint (``policy_fingerprint``)."""
    kept = {k: v for k, v in body.items() if k not in IGNORED_FIELDS}
    return fingerprint(tenant, surface, stream, policy, kept)


def context_key(
    tenant: str, surface: str, stream: bool, policy: str, body: Mapping[str, Any]
) -> str | None:
    """The exact key of ``body`` without its last user turn's content; None when the
    body has no user turn to leave out (nothing for a semantic match to vary)."""
    blanked = _without_last_user_turn(body)
    if blanked is None:
        return None
    return "ctx-" + answer_key(tenant, surface, stream, policy, blanked)


def tenant_of(config: DecisionCacheConfig, client: str, headers: Mapping[str, str]) -> str | None:
    """The scope a request's answers belong to; None when the scope's header is absent
    (such a request is neither served from the cache nor stored)."""
    header = config.header
    if header is None:
        return client
    value = headers.get(header)
    return f"{client}/{value}" if value else None


def _without_last_user_turn(body: Mapping[str, Any]) -> dict[str, Any] | None:
    """Chat and Anthropic Messages bodies keep turns in ``messages``; the Responses API
    in ``input`` (a string is one user turn)."""
    for field in ("messages", "input"):
        turns = body.get(field)
        if isinstance(turns, str):
            return {**body, field: _BLANK}
        if isinstance(turns, Sequence):
            blanked = _blank_last_user(turns)
            if blanked is not None:
                return {**body, field: blanked}
    return None


def _blank_last_user(turns: Sequence[Any]) -> list[Any] | None:
    for i in range(len(turns) - 1, -1, -1):
        turn = turns[i]
        if isinstance(turn, dict) and turn.get("role") == "user":
            return [*turns[:i], {**turn, "content": _BLANK}, *turns[i + 1 :]]
    return None
