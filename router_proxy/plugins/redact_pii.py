"""``{redact_pii: true}`` or ``{redact_pii: {kinds: [...], mask: ...}}``: replace personal
data in every message's text with a mask before the request leaves the gateway.

Detection is the `pii` signal's (Luhn-checked cards, libphonenumber-validated phones,
mod-97 IBANs, ...), so what a policy routes on is exactly what gets masked. Unlike the
signal it reads every character (what it skipped would leave unmasked); its cost is
linear (~150 ms per MB) but for phone numbers, where libphonenumber checks at most
``max_phone_checks`` digit runs (~0.7 ms each with four regions) and every run past
them is masked unchecked. It runs in the CPU pool when the text is long (the pipeline's
``cpu_bound``)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from router_proxy.config.base import StrictModel
from router_proxy.context import RequestContext
from router_proxy.plugins.base import Body, Plugin
from router_proxy.signals.pii import ALL_KINDS, DEFAULT_PHONE_REGIONS, PiiDetector, PiiKind


class RedactOptions(StrictModel):
    kinds: list[PiiKind] = Field(default_factory=lambda: list(ALL_KINDS), min_length=1)
    phone_regions: list[str] = Field(default_factory=lambda: list(DEFAULT_PHONE_REGIONS))
    mask: str = Field(default="[{KIND}]", description="{KIND} / {kind}: the kind found")
    max_phone_checks: int = Field(
        default=256,
        ge=0,
        description="digit runs checked as phone numbers per text; the rest are masked "
        "unchecked (bounds the cost of a body full of numbers)",
    )


class RedactPiiPlugin(Plugin):
    name = "redact_pii"
    config_model = bool | RedactOptions
    cpu_bound = True

    def __init__(self, config: bool | RedactOptions) -> None:
        options = config if isinstance(config, RedactOptions) else RedactOptions()
        super().__init__(options)
        self.enabled = config is not False
        self.options = options
        self.detector = PiiDetector(
            options.kinds, options.phone_regions, options.max_phone_checks, overflow="mask"
        )

    def redact(self, text: str) -> str:
        spans = self.detector.find(text)
        if not spans:
            return text
        out: list[str] = []
        last = 0
        for span in spans:  # sorted and disjoint: one left-to-right pass
            out.append(text[last : span.start])
            out.append(self.options.mask.format(KIND=span.kind.upper(), kind=span.kind))
            last = span.end
        out.append(text[last:])
        return "".join(out)

    def _content(self, content: Any) -> Any:
        if isinstance(content, str):
            return self.redact(content)
        if isinstance(content, list):
            return [
                {**part, "text": self.redact(part["text"])}
                if isinstance(part, dict) and isinstance(part.get("text"), str)
                else part
                for part in content
            ]
        return content

    def _tool_calls(self, calls: Any) -> Any:
        if not isinstance(calls, list):
            return calls
        out = []
        for call in calls:
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict) and isinstance(function.get("arguments"), str):
                function = {**function, "arguments": self.redact(function["arguments"])}
                call = {**call, "function": function}
            out.append(call)
        return out

    def _message(self, message: Any) -> Any:
        if not isinstance(message, dict):
            return message
        out = {**message, "content": self._content(message.get("content"))}
        if "tool_calls" in message:  # the arguments a model wrote can echo personal data
            out["tool_calls"] = self._tool_calls(message["tool_calls"])
        return out

    def apply(self, body: Body, ctx: RequestContext) -> Body:
        if not self.enabled:
            return body
        if ctx.endpoint != "chat":  # a text completion's prompt, an embedding's input
            key = "prompt" if ctx.endpoint == "completions" else "input"
            return {**body, key: self._texts(body.get(key))}
        return {**body, "messages": [self._message(m) for m in body.get("messages") or []]}

    def _texts(self, value: Any) -> Any:
        """A string or a list of strings redacted (token-id lists have no text)."""
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, list):
            return [self.redact(v) if isinstance(v, str) else v for v in value]
        return value
