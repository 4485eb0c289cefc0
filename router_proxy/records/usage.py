"""A record's ``usage``: served, shadow and call records alike."""

from __future__ import annotations

from collections.abc import Mapping

from router_proxy.protocol import Usage


def usage_fields(usage: Usage | None) -> Mapping[str, int] | None:
    if usage is None:
        return None
    return {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens}
