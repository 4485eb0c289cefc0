"""User regexes (``re:`` terms) that no request can turn into a freeze.

Python's ``re`` backtracks: ``\\bwhy\\b.*\\?`` costs time quadratic in the text (200 KB of
"why " held the event loop 5-14 s) and ``(a+)+b`` exponential. So a pattern runs on
RE2 (``google-re2``: time linear in the text, whatever the pattern) when RE2 accepts it,
and on ``re`` only when it does not (lookarounds, backreferences, possessive repeats):

- there, at load, a pattern whose backtracking can explode is refused (``unsafe_reason``):
  a repetition inside a repetition (``(a+)+``, ``(.*)*``), a repeated alternation whose
  branches can start alike (``(a|ab)*``), or more than one unbounded repetition
  (``\\d+\\d+``: polynomial);
- and it reads at most ``FALLBACK_CHARS`` of the text (the first and last halves): with
  one unbounded repetition left, a search there costs ~2 ms at worst (measured).

RE2 reads ``\\w``, ``\\d``, ``\\s`` and ``\\b`` as ASCII where ``re`` reads Unicode, so a
pattern that is not ASCII itself and uses them (``\\b`` around Cyrillic words, which RE2 could
never match) stays on ``re``. An ASCII pattern on RE2 differs only at non-ASCII word
characters next to its ``\\b``/``\\w`` (``\\w+`` stops at "ï" in "naïve"; ``\\pL`` matches
letters of any script).

``window`` is the bound every text-scanning signal shares: long text is read as its first
and last halves, so a request's cost stops growing with its size.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterable
from typing import Any

import re2

FALLBACK_CHARS = 4096
_UNICODE_CLASSES = frozenset({"AT_BOUNDARY", "AT_NON_BOUNDARY"})
# Beyond this many combinations a nested or alternated repetition is refused on ``re``.
_MAX_COMBINATIONS = 100
_REPEATS = frozenset({"MAX_REPEAT", "MIN_REPEAT"})  # possessive ones never backtrack
# The parser behind ``re.compile``: the only complete reading of its syntax.
_sre: Any = importlib.import_module("re._parser")
_UNBOUNDED: int = importlib.import_module("re._constants").MAXREPEAT


def window(text: str, max_chars: int) -> str:
    """``text``, or its first and last ``max_chars // 2`` characters when longer."""
    if len(text) <= max_chars:
        return text
    half = max_chars // 2
    return f"{text[:half]}\n{text[-half:]}"


class UserPattern:
    """One ``re:`` pattern, compiled for the engine that can run it safely.

    RE2 patterns search UTF-8 bytes (``search_bytes``; encode the text once per request
    for all of them: the wrapper's own ``str`` path costs 2-3x more per call)."""

    def __init__(self, pattern: str, *, ignore_case: bool = False) -> None:
        self.pattern = pattern
        self.re2: Any = _re2_or_none(pattern, ignore_case)
        self.re: re.Pattern[str] | None = None
        if self.re2 is None:
            self.re = re.compile(pattern, re.IGNORECASE if ignore_case else 0)

    @property
    def engine(self) -> str:
        return "re2" if self.re2 is not None else "re"

    def search(self, text: str, encoded: bytes | None = None) -> str | None:
        """The first match's text, or None. ``encoded``: ``text`` as UTF-8, if at hand."""
        if self.re2 is not None:
            match = self.re2.search(text.encode() if encoded is None else encoded)
            return match.group(0).decode(errors="replace") if match else None
        assert self.re is not None
        found = self.re.search(window(text, FALLBACK_CHARS))
        return found.group(0) if found else None

    def fullmatch(self, text: str) -> bool:
        if self.re2 is not None:
            return self.re2.fullmatch(text.encode()) is not None
        assert self.re is not None
        # Anchored at both ends: one start, so only the shapes refused at load explode.
        return self.re.fullmatch(text) is not None


def _re2_or_none(pattern: str, ignore_case: bool) -> Any:
    if not pattern.isascii() and _unicode_classes(pattern):
        return None
    options = re2.Options()
    options.log_errors = False  # a refused pattern is expected here, not an error
    options.case_sensitive = not ignore_case
    try:
        return re2.compile(pattern.encode(), options)
    except re2.error:
        return None


def _unicode_classes(pattern: str) -> bool:
    """``pattern`` uses \\w, \\d, \\s or \\b (Unicode on ``re``, ASCII on RE2)."""
    try:
        items = _sre.parse(pattern)
    except re.error:  # RE2-only syntax (\pL, \z): RE2 runs it
        return False
    for op, av, _ in _walk(items, 1):
        name = str(op)
        if name == "AT" and str(av) in _UNICODE_CLASSES:
            return True
        if name == "IN" and any(str(kind) == "CATEGORY" for kind, _ in av):
            return True
    return False


def check_pattern(pattern: str) -> None:
    """ValueError unless ``pattern`` compiles and runs safely on its engine (RE2 takes
    its own syntax too, e.g. ``\\pL``)."""
    if _re2_or_none(pattern, False) is not None:
        return
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"'re:{pattern}' is not a valid regex: {exc}") from exc
    reason = unsafe_reason(pattern)
    if reason is not None:
        raise ValueError(
            f"'re:{pattern}' would run on Python's re (RE2 cannot run it: lookarounds, "
            f"backreferences and \\b/\\w in a non-ASCII pattern need re), where {reason}: "
            "its matching time could explode on a crafted request. Rewrite it without "
            "lookarounds or backreferences (RE2 runs any such pattern in linear time), "
            "or bound the repetition ({0,100} instead of *)"
        )


def unsafe_reason(pattern: str) -> str | None:
    """Why ``pattern`` can backtrack catastrophically on ``re``; None if it cannot."""
    items = _sre.parse(pattern)
    unbounded = 0
    for op, av, outer in _walk(items, 1):
        if str(op) not in _REPEATS:
            continue
        low, high, body = av
        if high == _UNBOUNDED:
            unbounded += 1
        if outer > 1 and low != high and outer * high > _MAX_COMBINATIONS:
            return "a repetition sits inside another repetition (like (a+)+)"
        if outer * high > _MAX_COMBINATIONS and _overlapping_branches(body):
            return "a repeated alternation has branches that can start alike (like (a|ab)*)"
    if unbounded > 1:
        return f"it repeats without bound {unbounded} times (at most once there)"
    return None


def _walk(items: Iterable[Any], outer: int) -> Iterable[tuple[Any, Any, int]]:
    """Every node, with the largest repeat count of the repetitions around it."""
    for op, av in items:
        yield op, av, outer
        name = str(op)
        if name in _REPEATS or name == "POSSESSIVE_REPEAT":
            inner = outer if name == "POSSESSIVE_REPEAT" else max(outer, av[1])
            yield from _walk(av[2], inner)
        elif name == "SUBPATTERN":
            yield from _walk(av[3], outer)
        elif name == "BRANCH":
            for branch in av[1]:
                yield from _walk(branch, outer)
        elif name in ("ASSERT", "ASSERT_NOT"):
            yield from _walk(av[1], outer)
        elif name == "ATOMIC_GROUP":
            yield from _walk(av, outer)
        elif name == "GROUPREF_EXISTS":
            yield from _walk(av[1], outer)
            if av[2] is not None:
                yield from _walk(av[2], outer)


def _overlapping_branches(items: Any) -> bool:
    """An alternation anywhere in ``items`` with two branches that the characters they
    start with cannot tell apart (``a|ab``; ``bar|baz`` differ at their third). ``re``
    factors ``a|aa`` into ``a(?:|a)``: an empty branch is one nothing tells apart."""
    for op, av, _ in _walk(items, 1):
        if str(op) != "BRANCH":
            continue
        leads = [_lead(branch) for branch in av[1]]
        for i, first in enumerate(leads):
            if any(_alike(first, other) for other in leads[i + 1 :]):
                return True
    return False


def _alike(one: list[set[int]], other: list[set[int]]) -> bool:
    if not one or not other:
        return True
    return all(a & b for a, b in zip(one, other, strict=False))


def _lead(items: Any) -> list[set[int]]:
    """The sets of code points (both cases) a match of ``items`` starts with, one per
    leading single-character node; stops at the first other kind of node."""
    lead: list[set[int]] = []
    for op, av in items:
        name = str(op)
        if name == "LITERAL":
            lead.append(_cases(av))
        elif name == "IN":
            chars: set[int] = set()
            for kind, value in av:
                if str(kind) == "LITERAL":
                    chars |= _cases(value)
                elif str(kind) == "RANGE" and value[1] - value[0] < 256:
                    chars |= set(range(value[0], value[1] + 1))
                else:
                    return lead
            lead.append(chars)
        else:
            return lead
    return lead


def _cases(code: int) -> set[int]:
    char = chr(code)
    return {code, *(ord(c) for c in (char.lower(), char.upper()) if len(c) == 1)}
