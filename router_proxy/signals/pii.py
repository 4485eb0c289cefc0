"""``type: pii``: personal data in the conversation; ``find_pii`` for masking it.

Each kind is a candidate pattern plus a check, so numbers that merely look right are
dropped: ``credit_card`` 13-19 digits (contiguous, or grouped 4-4-4-4[-3] / 4-6-4|5 with
one separator) with a known issuer prefix and a valid Luhn sum; ``iban`` a country's exact
IBAN length and mod-97 = 1; ``ssn`` ddd-dd-dddd (dash or space; nine bare digits are too
ambiguous) without area 000, 666 or 9xx, group 00 or serial 0000; ``ip`` v4 and v6 as
``ipaddress`` parses them (an IPv6 candidate needs a digit, so ``Foo::Bar`` is not one);
``email`` an ASCII address with a dotted domain; ``phone`` what Google's libphonenumber
(``phonenumbers.PhoneNumberMatcher``, leniency VALID) finds for each of
``phone_regions``, plus +-prefixed international numbers in any region. With ``US``
listed, a bare ten-digit number with a valid area code is a US phone number.

Cost (this 2-core machine): ~1 ms for a 10 KB prompt, ~25 ms for 100 KB, 130-180 ms for
1 MB (one regex pass per kind, all linear; a text without digits or "@" skips those
kinds). libphonenumber is slow (~100 us per candidate and region), so it is run on short
windows around runs of 7-24 digits and separators, never on the whole text, and on at
most ``max_phone_candidates`` of them (the signal: 128, <= ~90 ms with four regions;
redaction and ``find_pii``: 256). Past that many digit runs the signal leaves phone
numbers unchecked, and redaction masks every further run unchecked (``overflow="mask"``:
masking too much is safe, too little leaks). Other kinds read all they are given: the
signal at most ``max_chars`` (the first and last halves of longer text: 64 Ki characters,
~15 ms), in the CPU pool when long; redaction everything (it must), ~150 ms per MB, in
the pool.
Found with faker-made data (200 per kind and locale: en_US, en_GB, de_DE, fr_FR): every
email, IBAN, SSN and IP address; the phone numbers libphonenumber calls valid (same as
running it on the whole text; faker also makes invalid ones); cards but 12-digit Maestro
and obsolete 15-digit JCB (1800, 2131).

Signal value: the kinds found, sorted and comma-joined (``"email,phone"``), for logs and
``explain``; the detail counts them and never quotes the data. ``{pii: email}`` is refused
at load: a rule compares the whole value, so it would miss a prompt that also holds a
phone number. For one kind, define a signal with ``kinds: [email]`` and use its name.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import phonenumbers
from pydantic import Field, field_validator

from router_proxy.config.base import SignalConfigBase
from router_proxy.context import RequestContext
from router_proxy.signals.base import CpuSignal, SignalResult
from router_proxy.signals.conversation import conversation_text
from router_proxy.signals.patterns import window

PiiKind = Literal["credit_card", "iban", "ssn", "email", "ip", "phone"]
ALL_KINDS: tuple[PiiKind, ...] = get_args(PiiKind)  # also the tie-break order when merging
DEFAULT_PHONE_REGIONS = ("US", "GB", "DE", "FR")
MAX_CHARS = 65_536

_EMAIL = re.compile(
    r"(?<![\w.%+-])[A-Za-z0-9._%+-]{1,64}@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
    r"[A-Za-z]{2,63}(?![\w-])"
)
# Patterns open with a character class, not a lookbehind, so `re` can skip ahead fast.
_CARD = re.compile(
    r"[0-9](?<![\w.-][0-9])(?:[0-9]{12,18}"
    r"|[0-9]{3}(?P<s>[ -])[0-9]{4}(?P=s)[0-9]{4}(?P=s)[0-9]{4}(?:(?P=s)[0-9]{3})?"
    r"|[0-9]{3}(?P<t>[ -])[0-9]{6}(?P=t)[0-9]{4,5})(?![\w-]|[ .-][0-9])"
)
# Visa, Mastercard (51-55, 2221-2720), Mir, Amex, Diners, JCB, Discover, UnionPay, Maestro.
_ISSUER = re.compile(r"4|5|6|3[045689]|37|22[0-9]|2[3-6]|27[0-2]")
_SSN = re.compile(
    r"[0-9]{3}(?<![\w.-][0-9]{3})(?<!000|666)(?<!9[0-9]{2})(?P<s>[- ])"
    r"(?!00)[0-9]{2}(?P=s)(?!0000)[0-9]{4}(?![\w-])"
)
_IBAN = re.compile(r"[A-Z]{2}[0-9]{2}(?<![A-Za-z0-9][A-Z]{2}[0-9]{2})(?: ?[A-Z0-9]){11,32}")
_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?!\w|\.\d)")
_IPV6 = re.compile(
    r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:(?:\d{1,3}\.){3}\d{1,3}|[0-9A-Fa-f]{1,4})?"
    r"(?:%\w+(?:\.\w+)*)?(?![\w:])"
)
_DIGIT_KINDS = frozenset({"credit_card", "iban", "ssn", "phone", "ip"})
# A run of 7-24 digits and separators: where a phone number could be.
_PHONE_CANDIDATE = re.compile(r"[+(0-9](?<![\w.][+(0-9])[0-9 ()./\u00a0-]{5,22}[0-9]")
_NOT_PHONE = re.compile(r"[0-9]+\.[0-9]+|[0-9]{1,3}(?:\.[0-9]{1,3}){3}")  # decimals, IPv4
_COUNTRY_PREFIX = re.compile(r"\+[0-9]{1,3} ?$")
_CONTEXT, _TRIES = 8, 8  # characters after a candidate; matcher attempts per window
_VALID = phonenumbers.Leniency.VALID
_IBAN_TABLE = (
    "AD24 AE23 AL28 AT20 AZ28 BA20 BE16 BG22 BH22 BI27 BR29 BY28 CH21 CR22 CY28 CZ24 DE22 "
    "DJ27 DK18 DO28 EE20 EG29 ES24 FI18 FK18 FO18 FR27 GB22 GE22 GI23 GL18 GR27 GT28 HR21 "
    "HU28 IE22 IL23 IQ23 IS26 IT27 JO30 KW30 KZ20 LB28 LC32 LI21 LT20 LU20 LV21 LY25 MC27 "
    "MD24 ME22 MK19 MN20 MR27 MT31 MU30 NI28 NL18 NO15 OM23 PK24 PL28 PS29 PT25 QA29 RO24 "
    "RS22 RU33 SA24 SC31 SD18 SE24 SI19 SK24 SM27 SO23 ST25 SV28 TL23 TN24 TR26 UA29 VA22 "
    "VG24 XK20 YE30"
)
_IBAN_LENGTHS = {entry[:2]: int(entry[2:]) for entry in _IBAN_TABLE.split()}


@dataclass(frozen=True, slots=True)
class Span:
    """``text[start:end]`` is personal data of ``kind``."""

    kind: PiiKind
    start: int
    end: int


# One regex call reads at most this much text: a pool thread inside one holds the GIL
# until it returns (a pass over 1.6 MB held the event loop 250 ms). Matches may run into
# the next chunk by up to _OVERLAP characters (longer than any e-mail address).
_CHUNK, _OVERLAP = 32_768, 1024
_MERGE_GAP = 3  # characters between two unchecked digit runs masked along with them


def _finditer(pattern: re.Pattern[str], text: str) -> Iterator[re.Match[str]]:
    """``pattern.finditer(text)``, one chunk at a time; the same matches as one pass
    (lookbehinds see before ``pos``; the scan resumes where the last match ended)."""
    if len(text) <= _CHUNK + _OVERLAP:
        yield from pattern.finditer(text)
        return
    resume = 0
    for start in range(0, len(text), _CHUNK):
        stop = start + _CHUNK
        for match in pattern.finditer(text, max(start, resume), stop + _OVERLAP):
            if match.start() >= stop:
                break
            resume = match.end()
            yield match


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, char in enumerate(reversed(digits)):
        d = int(char) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def _cards(text: str) -> Iterator[tuple[int, int]]:
    for m in _finditer(_CARD, text):
        digits = re.sub(r"[ -]", "", m.group())
        if _ISSUER.match(digits) and luhn_ok(digits):
            yield m.span()


def _ibans(text: str) -> Iterator[tuple[int, int]]:
    for m in _finditer(_IBAN, text):
        length = _IBAN_LENGTHS.get(m.group()[:2])
        compact = m.group().replace(" ", "")
        if length is None or len(compact) < length:
            continue
        # The pattern may run on into following capitals: cut at the country's length,
        # which must end where a group ends.
        end, kept = m.start(), 0
        while kept < length:
            kept += text[end] != " "
            end += 1
        if end < len(text) and text[end].isalnum():
            continue
        iban = compact[:length]
        if int("".join(str(int(c, 36)) for c in iban[4:] + iban[:4])) % 97 == 1:
            yield m.start(), end


def _emails(text: str) -> Iterator[tuple[int, int]]:
    if "@" in text:
        yield from (m.span() for m in _finditer(_EMAIL, text))


def _ssns(text: str) -> Iterator[tuple[int, int]]:
    yield from (m.span() for m in _finditer(_SSN, text))


def _ips(text: str) -> Iterator[tuple[int, int]]:
    for m in _finditer(_IPV4, text) if "." in text else ():
        try:
            ipaddress.IPv4Address(m.group())
        except ValueError:
            continue
        yield m.span()
    for m in _finditer(_IPV6, text) if ":" in text else ():
        candidate = m.group()
        if not any(c.isdigit() for c in candidate.split("%")[0]):
            continue
        try:
            ipaddress.IPv6Address(candidate)
        except ValueError:
            continue
        yield m.span()


def merge(spans: Iterable[Span]) -> list[Span]:
    """Sorted, disjoint spans: overlapping ones become their union, named after the
    longest of them (ties by ``ALL_KINDS`` order), so masking them hides every match."""
    merged: list[Span] = []
    group: list[Span] = []
    group_end = -1
    for span in sorted(spans, key=lambda s: (s.start, s.end)):
        if group and span.start >= group_end:
            merged.append(_union(group))
            group = []
        group.append(span)
        group_end = max(group_end, span.end)
    if group:
        merged.append(_union(group))
    return merged


def _union(group: list[Span]) -> Span:
    best = min(group, key=lambda s: (s.start - s.end, ALL_KINDS.index(s.kind)))
    return Span(best.kind, min(s.start for s in group), max(s.end for s in group))


class PiiDetector:
    """Finds the given kinds; build once (patterns and phone metadata load here)."""

    def __init__(
        self,
        kinds: Iterable[PiiKind] = ALL_KINDS,
        phone_regions: Sequence[str] = DEFAULT_PHONE_REGIONS,
        max_phone_candidates: int = 256,
        overflow: Literal["skip", "mask"] = "mask",
    ) -> None:
        finders: dict[PiiKind, Callable[[str], Iterator[tuple[int, int]]]] = {
            "credit_card": _cards,
            "iban": _ibans,
            "ssn": _ssns,
            "email": _emails,
            "phone": self._phones,
            "ip": _ips,
        }
        self.kinds = tuple(k for k in ALL_KINDS if k in set(kinds))
        self._finders = [(kind, finders[kind]) for kind in self.kinds]
        # "ZZ" (unknown region) still finds +-prefixed international numbers.
        self._regions = tuple(r.upper() for r in phone_regions) or ("ZZ",)
        self._max_candidates = max_phone_candidates
        self._mask_overflow = overflow == "mask"
        if "phone" in self.kinds:  # load the regions' metadata now, not on a request
            for region in self._regions:
                list(phonenumbers.PhoneNumberMatcher("+1 650 253 0000", region))

    def _phones(self, text: str) -> Iterator[tuple[int, int]]:
        # libphonenumber is run on short windows around digit runs, never on the whole
        # text: its cost then grows with the number of candidates, which is capped.
        seen: set[tuple[int, int]] = set()
        run: list[int] = []  # unchecked runs close together, masked as one span
        for i, candidate in enumerate(_finditer(_PHONE_CANDIDATE, text)):
            if _NOT_PHONE.fullmatch(candidate.group()):
                continue
            if i >= self._max_candidates:
                if not self._mask_overflow:
                    break
                # Unchecked: taken for a phone number. A body of nothing but digit runs
                # becomes a few spans, not one object per run.
                if run and candidate.start() - run[1] <= _MERGE_GAP:
                    run[1] = candidate.end()
                else:
                    if run:
                        seen.add((run[0], run[1]))
                    run = [candidate.start(), candidate.end()]
                continue
            # Context on both sides lets the matcher see letters, times ("10:30"), etc.
            lo, hi = max(candidate.start() - 2, 0), candidate.end() + _CONTEXT
            window = text[lo:hi]
            for region in self._regions:
                matcher = phonenumbers.PhoneNumberMatcher(window, region, _VALID, _TRIES)
                for match in matcher:
                    start = lo + match.start
                    # "+49 (0) 30 ..." matches from "(0)": take the country code too.
                    prefix = _COUNTRY_PREFIX.search(text, max(start - 5, 0), start)
                    seen.add((prefix.start() if prefix else start, lo + match.end))
        if run:
            seen.add((run[0], run[1]))
        yield from seen

    def find(self, text: str) -> list[Span]:
        """Sorted, non-overlapping spans of personal data in ``text``."""
        # Skipping digit-bound kinds on digit-free text takes ~0.1 ms for 1 MB.
        digits = any(d in text for d in "0123456789")
        return merge(
            Span(kind, start, end)
            for kind, find in self._finders
            if digits or kind not in _DIGIT_KINDS
            for start, end in find(text)
        )


@functools.lru_cache(maxsize=16)
def _detector(kinds: tuple[PiiKind, ...], regions: tuple[str, ...]) -> PiiDetector:
    return PiiDetector(kinds, regions)


def find_pii(
    text: str,
    kinds: Iterable[PiiKind] = ALL_KINDS,
    *,
    phone_regions: Sequence[str] = DEFAULT_PHONE_REGIONS,
) -> list[Span]:
    """Sorted, disjoint spans of ``kinds`` in ``text``: mask right to left, or in one
    left-to-right pass, and every match is hidden exactly."""
    return _detector(tuple(sorted(set(kinds))), tuple(phone_regions)).find(text)


class PiiSignalConfig(SignalConfigBase):
    type: Literal["pii"]
    kinds: list[PiiKind] = Field(
        default_factory=lambda: list(ALL_KINDS), min_length=1, description="kinds to look for"
    )
    phone_regions: list[str] = Field(
        default_factory=lambda: list(DEFAULT_PHONE_REGIONS),
        description="regions whose national phone formats are recognised "
        "(+-prefixed numbers are found in any case)",
    )
    scope: Literal["last_user", "user", "all"] = Field(
        default="all",
        description="which messages are read; `all` (the default: the whole conversation "
        "goes upstream) includes system prompts and tool calls, `user` skips them",
    )
    max_chars: int = Field(
        default=MAX_CHARS,
        ge=1024,
        description="longer text is read as its first and last max_chars/2 characters "
        "(bounds what one request costs; the redact_pii plugin reads everything)",
    )

    @field_validator("kinds")
    @classmethod
    def _unique(cls, kinds: list[PiiKind]) -> list[PiiKind]:
        return [k for k in ALL_KINDS if k in kinds]

    @field_validator("phone_regions")
    @classmethod
    def _regions(cls, regions: list[str]) -> list[str]:
        unknown = [r for r in regions if r.upper() not in phonenumbers.SUPPORTED_REGIONS]
        if unknown:
            raise ValueError(
                f"unknown phone region(s) {', '.join(map(repr, unknown))}: "
                "use ISO 3166-1 alpha-2 codes such as US, GB, DE"
            )
        return list(dict.fromkeys(r.upper() for r in regions))

    def accepts_value(self, value: object) -> str | None:
        return (
            f"signal '{self.name}' can find several kinds at once, so {{{self.name}: {value}}} "
            f"would miss mixed finds; define a pii signal with `kinds: [{value}]` and use its name"
        )


class PiiSignal(CpuSignal[PiiSignalConfig]):
    config_model = PiiSignalConfig
    cost_rank = 20

    def __init__(self, config: PiiSignalConfig) -> None:
        super().__init__(config)
        self._detector = PiiDetector(
            config.kinds, config.phone_regions, max_phone_candidates=128, overflow="skip"
        )

    def _text(self, ctx: RequestContext) -> str:
        key = f"pii.{self.config.scope}"
        text = ctx.memo.get(key)
        if text is None:  # the whole scope, windowed when read
            text = ctx.memo[key] = conversation_text(ctx, self.config.scope)
        return str(text)

    def text_chars(self, ctx: RequestContext) -> int:
        return min(len(self._text(ctx)), self.config.max_chars)

    def compute(self, ctx: RequestContext) -> SignalResult:
        spans = self._detector.find(window(self._text(ctx), self.config.max_chars))
        if not spans:
            return SignalResult(False, None, f"no {', '.join(self.config.kinds)} found")
        counts = Counter(s.kind for s in spans)
        found = ", ".join(f"{kind} x{n}" for kind, n in sorted(counts.items()))
        return SignalResult(True, ",".join(sorted(counts)), f"found {found}")
