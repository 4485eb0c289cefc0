"""``type: keyword``: case-insensitive word or ``re:`` pattern matches in the prompt.

Plain terms match on word boundaries ("def" does not fire on "define"); terms may start or
end with punctuation ("c++", ".NET"). A plain term is a substring test, then a regex of
the literal between two fixed lookarounds (linear). ``re:`` patterns run on RE2 where it
can (linear in the text whatever the pattern), else on Python's ``re`` within the limits
``signals/patterns.py`` sets and checks at load.

A request's cost is bounded whatever its size: text longer than ``max_chars`` (default
64 Ki characters) is read as its first and last halves, where a prompt's instructions
usually are.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from router_proxy.config.base import SignalConfigBase
from router_proxy.context import RequestContext
from router_proxy.signals.base import Signal, SignalResult
from router_proxy.signals.patterns import UserPattern, check_pattern, window

REGEX_PREFIX = "re:"
MAX_CHARS = 65_536


def check_regex_term(term: str) -> str:
    """``term`` as given; a ``re:`` term's regex must compile and be safe to run on any
    text (``signals/patterns.py``; ValueError if not)."""
    if term.startswith(REGEX_PREFIX):
        check_pattern(term[len(REGEX_PREFIX) :])
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
    max_chars: int = Field(
        default=MAX_CHARS,
        ge=1024,
        description="longer text is read as its first and last max_chars/2 characters "
        "(bounds what one request costs)",
    )

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


class _Text:
    """The text a keyword signal reads, in the forms its terms need (made once per
    request, scope and window, shared by the keyword signals reading them; each form only
    when a term needs it: most prompts are settled by plain terms' substring tests)."""

    __slots__ = ("_encoded", "_folded", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self._folded: str | None = None
        self._encoded: bytes | None = None

    @property
    def folded(self) -> str:  # lower-cased, for plain terms
        if self._folded is None:
            self._folded = self.text.lower()
        return self._folded

    @property
    def encoded(self) -> bytes:  # UTF-8, for RE2
        if self._encoded is None:
            self._encoded = self.text.encode(errors="replace")
        return self._encoded


@dataclass(frozen=True, slots=True)
class _Term:
    """One term, compiled. Plain terms carry a ``needle`` for a substring test: a C-speed
    scan that settles most prompts (the term is absent) before any regex runs."""

    term: str
    needle: str | None
    pattern: re.Pattern[str] | None  # a plain term's
    user: UserPattern | None  # a `re:` term's

    def find(self, text: _Text, case_sensitive: bool) -> str | None:
        if self.user is not None:
            return self.user.search(text.text, text.encoded)
        assert self.needle is not None
        assert self.pattern is not None
        haystack = text.text if case_sensitive else text.folded
        if self.needle not in haystack:
            return None
        match = self.pattern.search(haystack)
        return match.group(0) if match else None


def _compile(term: str, case_sensitive: bool) -> _Term:
    if term.startswith(REGEX_PREFIX):
        user = UserPattern(term_pattern(term), ignore_case=not case_sensitive)
        return _Term(term, None, None, user)
    # Plain terms are matched against the lower-cased text (made once per request), so
    # neither the substring test nor the boundary regex needs IGNORECASE.
    needle = term if case_sensitive else term.lower()
    return _Term(term, needle, re.compile(term_pattern(needle)), None)


class KeywordSignal(Signal[KeywordSignalConfig]):
    config_model = KeywordSignalConfig
    cost_rank = 10

    def __init__(self, config: KeywordSignalConfig) -> None:
        super().__init__(config)
        self._any = [_compile(t, config.case_sensitive) for t in config.any]
        self._all = [_compile(t, config.case_sensitive) for t in config.all]
        self._memo_key = f"keyword.{config.scope}.{config.max_chars}"

    def _text(self, ctx: RequestContext) -> _Text:
        config = self.config
        found = ctx.memo.get(self._memo_key)
        if found is None:  # shared by every keyword signal reading this scope and window
            text = window(ctx.text(config.scope), config.max_chars)
            found = ctx.memo[self._memo_key] = _Text(text)
        assert isinstance(found, _Text)
        return found

    async def evaluate(self, ctx: RequestContext) -> SignalResult:
        text, case = self._text(ctx), self.config.case_sensitive
        found: list[str] = []
        for term in self._all:
            hit = term.find(text, case)
            if hit is None:
                return SignalResult(False, False, f"'{term.term}' not found in {self.config.scope}")
            found.append(hit)
        if self._any:
            hit = next((h for t in self._any if (h := t.find(text, case)) is not None), None)
            if hit is None:
                return SignalResult(False, False, f"no term found in {self.config.scope}")
            found.append(hit)
        return SignalResult(True, True, "matched " + ", ".join(repr(f) for f in found))
