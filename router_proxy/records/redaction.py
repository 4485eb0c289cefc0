"""Personal data masked in a record's content (``prompt``, ``messages``, ``answer``, and
each of a multi-call request's ``calls``' ``answer``) with the redact_pii plugin's
detectors, in the records writer thread."""

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
    if isinstance(out.get("calls"), list):
        out["calls"] = [_redact_call(call, plugin) for call in out["calls"]]
    return out


def _redact_call(call: Any, plugin: RedactPiiPlugin) -> Any:
    if isinstance(call, dict) and isinstance(call.get("answer"), str):
        return call | {"answer": plugin.redact(call["answer"])}
    return call
