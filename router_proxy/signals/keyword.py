"""``type: keyword``: case-insensitive word or ``re:`` pattern matches in the prompt.

Plain terms match on word boundaries ("def" does not fire on "define"); terms may start or
end with punctuation ("c++", ".NET"). All ``any`` terms compile into one alternation at
load, so a request costs one scan however many terms there are.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from router_proxy.config.base import SignalConfigBase
from router_proxy.context import RequestContext
from router_proxy.signals.base import Signal, SignalResult

REGEX_PREFIX = "re:"


def _check_term(term: str) -> str:
    if not term.strip():
        raise ValueError("empty term")
    if term.startswith(REGEX_PREFIX):
        try:
            re.compile(term[len(REGEX_PREFIX) :])
        except re.error as exc:
            raise ValueError(f"{term!r} is not a valid regex: {exc}") from exc
    return term


Term = Annotated[str, AfterValidator(_check_term)]


class KeywordSignalConfig(SignalConfigBase):
    type: Literal["keyword"]
    any: list[Term] = Field(default_factory=list, description="fires if any term matches")
    all: list[Term] = Field(default_factory=list, description="fires only if every term matches")
    scope: Literal["last_user", "user", "all"] = Field(
        default="last_user", description="which messages are read"
    )
    case_sensitive: bool = False

    @model_validator(mode="after")
    def _has_terms(self) -> KeywordSignalConfig:
        if not self.any and not self.all:
            raise ValueError("a keyword signal needs `any` or `all` terms")
        return self


def term_pattern(term: str) -> str:
    if term.startswith(REGEX_PREFIX):
        return term[len(REGEX_PREFIX) :]
    # Lookarounds instead of \b so terms that begin or end with punctuation still work.
    return rf"(?<!\w){re.escape(term)}(?!\w)"


class KeywordSignal(Signal[KeywordSignalConfig]):
    config_model = KeywordSignalConfig
    cost_rank = 10

    def __init__(self, config: KeywordSignalConfig) -> None:
        super().__init__(config)
        flags = 0 if config.case_sensitive else re.IGNORECASE
        self._any = (
            re.compile("|".join(f"(?:{term_pattern(t)})" for t in config.any), flags)
            if config.any
            else None
        )
        self._all = [(t, re.compile(term_pattern(t), flags)) for t in config.all]

    async def evaluate(self, ctx: RequestContext) -> SignalResult:
        text = ctx.text(self.config.scope)
        found: list[str] = []
        if self._all:
            for term, pattern in self._all:
                if not pattern.search(text):
                    return SignalResult(False, False, f"'{term}' not found in {self.config.scope}")
            found.extend(term for term, _ in self._all)
        if self._any is not None:
            match = self._any.search(text)
            if match is None:
                return SignalResult(False, False, f"no term found in {self.config.scope}")
            found.append(match.group(0))
        return SignalResult(True, True, "matched " + ", ".join(repr(f) for f in found))
