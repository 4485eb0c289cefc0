"""Personal data masked in a record's content (``prompt``, ``messages``, ``answer``) with
the redact_pii plugin's detectors, in the records writer thread."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from router_proxy.context import RequestContext
from router_proxy.plugins.redact_pii import RedactOptions, RedactPiiPlugin

# The plugin masks a chat body's messages for a chat request; records hold chat messages.
_CHAT = RequestContext.from_prompt("", request_id="records")
CONTENT_KEYS = ("prompt", "answer", "messages")


def redactor(option: bool | RedactOptions) -> RedactPiiPlugin | None:
    """The records section's ``redact:`` as a plugin (None: no redaction)."""
    return RedactPiiPlugin(option) if option is not False else None


def redact(record: Mapping[str, Any], plugin: RedactPiiPlugin) -> dict[str, Any]:
    """A copy of ``record`` with its content masked (other fields as they were)."""
    out = dict(record)
    for key in ("prompt", "answer"):
        if isinstance(out.get(key), str):
            out[key] = plugin.redact(out[key])
    if isinstance(out.get("messages"), list):
        out["messages"] = plugin.apply({"messages": out["messages"]}, _CHAT)["messages"]
    return out
