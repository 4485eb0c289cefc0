"""``type: keyword``: case-insensitive word or ``re:`` pattern matches in the prompt.

Plain terms match on word boundaries ("def" does not fire on "define"); terms may start or
end with punctuation ("c++", ".NET"). All ``any`` terms compile into one alternation at
load, so a request costs one scan however many terms there are.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from router_proxy.config.base import SignalConfigBase
from router_proxy.context import RequestContext
from router_proxy.signals.base import Signal, SignalResult

REGEX_PREFIX = "re:"


def check_regex_term(term: str) -> str:
    """``term`` as given; a ``re:`` term's regex must compile (ValueError if not)."""
    if term.startswith(REGEX_PREFIX):
        try:
            re.compile(term[len(REGEX_PREFIX) :])
        except re.error as exc:
            raise ValueError(f"{term!r} is not a valid regex: {exc}") from exc
    return term


def _check_term(term: str) -> str:
    if not term.strip():
        raise ValueError("empty term")
    return check_regex_term(term)


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


@dataclass(frozen=True, slots=True)
class _Term:
    """One term, compiled. Plain terms carry a ``needle`` for a substring test: a C-speed
    scan that settles most prompts (the term is absent) before any regex runs."""

    term: str
    needle: str | None
    pattern: re.Pattern[str]

    def find(self, text: str, folded: str) -> str | None:
        if self.needle is None:
            match = self.pattern.search(text)
        else:
            haystack = text if self.needle is self.term else folded
            if self.needle not in haystack:
                return None
            match = self.pattern.search(haystack)
        return match.group(0) if match else None


def _compile(term: str, case_sensitive: bool) -> _Term:
    if term.startswith(REGEX_PREFIX):
        flags = 0 if case_sensitive else re.IGNORECASE
        return _Term(term, None, re.compile(term_pattern(term), flags))
    # Plain terms are matched against the lower-cased text (made once per request), so
    # neither the substring test nor the boundary regex needs IGNORECASE.
    needle = term if case_sensitive else term.lower()
    return _Term(term, needle, re.compile(term_pattern(needle)))


class KeywordSignal(Signal[KeywordSignalConfig]):
    config_model = KeywordSignalConfig
    cost_rank = 10

    def __init__(self, config: KeywordSignalConfig) -> None:
        super().__init__(config)
        self._any = [_compile(t, config.case_sensitive) for t in config.any]
        self._all = [_compile(t, config.case_sensitive) for t in config.all]

    def _folded(self, ctx: RequestContext) -> str:
        key = f"keyword.folded.{self.config.scope}"
        folded = ctx.memo.get(key)
        if folded is None:  # shared by every keyword signal reading this scope
            folded = ctx.memo[key] = ctx.text(self.config.scope).lower()
        return str(folded)

    async def evaluate(self, ctx: RequestContext) -> SignalResult:
        text = ctx.text(self.config.scope)
        folded = text if self.config.case_sensitive else self._folded(ctx)
        found: list[str] = []
        for term in self._all:
            hit = term.find(text, folded)
            if hit is None:
                return SignalResult(False, False, f"'{term.term}' not found in {self.config.scope}")
            found.append(hit)
        if self._any:
            hit = next((h for t in self._any if (h := t.find(text, folded)) is not None), None)
            if hit is None:
                return SignalResult(False, False, f"no term found in {self.config.scope}")
            found.append(hit)
        return SignalResult(True, True, "matched " + ", ".join(repr(f) for f in found))
