"""``type: header``: request headers, e.g. to route one tenant or one client app.

``headers`` maps a header name (any case) to what its value must be: a string (exact,
case-sensitive, surrounding whitespace ignored), a list of strings (any of them), or
``"re:<regex>"`` matched against the whole value (``re:(?i)acme`` ignores case,
``re:.+`` only asks that the header be present and non-empty). Every listed header must
match. Credentials (``authorization``, ``x-api-key``, ``cookie``...) are removed before
routing, so naming one is refused at load.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from router_proxy.config.base import SignalConfigBase
from router_proxy.context import SECRET_HEADERS, RequestContext
from router_proxy.signals.base import Signal, SignalResult
from router_proxy.signals.keyword import REGEX_PREFIX, check_regex_term, term_pattern
from router_proxy.signals.patterns import UserPattern

_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9a-z-]+$")  # RFC 9110 field-name characters

HeaderValue = str | list[str]


def _check_value(name: str, value: str) -> str:
    try:
        return check_regex_term(value)
    except ValueError as exc:
        raise ValueError(f"header '{name}': {exc}") from exc


class HeaderSignalConfig(SignalConfigBase):
    type: Literal["header"]
    headers: dict[str, HeaderValue] = Field(
        min_length=1,
        description='header name -> value, list of values (any), or "re:<regex>" (full match)',
    )

    @field_validator("headers")
    @classmethod
    def _check(cls, headers: dict[str, HeaderValue]) -> dict[str, HeaderValue]:
        checked: dict[str, HeaderValue] = {}
        for raw_name, value in headers.items():
            name = raw_name.strip().lower()
            if not _TOKEN.match(name):
                raise ValueError(f"{raw_name!r} is not a valid header name")
            if name in SECRET_HEADERS:
                raise ValueError(
                    f"'{name}' carries credentials and is removed before routing; "
                    "signals never see it"
                )
            if name in checked:
                raise ValueError(f"header '{name}' is listed twice (names ignore case)")
            if isinstance(value, list):
                if not value:
                    raise ValueError(f"header '{name}': the list of values is empty")
                checked[name] = [_check_value(name, v) for v in value]
            else:
                checked[name] = _check_value(name, value)
        return checked


class _Expected:
    """What one header's value must be: one of some literals, or full-match a regex."""

    def __init__(self, expected: HeaderValue) -> None:
        options = expected if isinstance(expected, list) else [expected]
        self.literals = frozenset(o.strip() for o in options if not o.startswith(REGEX_PREFIX))
        # RE2 where it can run the pattern: a header value is the client's to choose.
        self.patterns = [
            UserPattern(term_pattern(o)) for o in options if o.startswith(REGEX_PREFIX)
        ]

    def matches(self, value: str) -> bool:
        value = value.strip()
        return value in self.literals or any(p.fullmatch(value) for p in self.patterns)


class HeaderSignal(Signal[HeaderSignalConfig]):
    config_model = HeaderSignalConfig
    cost_rank = 0

    def __init__(self, config: HeaderSignalConfig) -> None:
        super().__init__(config)
        self._checks = [(name, _Expected(value)) for name, value in config.headers.items()]

    async def evaluate(self, ctx: RequestContext) -> SignalResult:
        for name, expected in self._checks:
            value = ctx.headers.get(name)
            if value is None:
                return SignalResult(False, False, f"no {name} header")
            if not expected.matches(value):
                return SignalResult(False, False, f"{name} does not match")
        matched = ", ".join(name for name, _ in self._checks)
        return SignalResult(True, True, f"{matched} matched")
