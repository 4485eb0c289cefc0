"""The pii signal and find_pii: checked numbers, exact spans, merging, long texts."""

from __future__ import annotations

from typing import Any

import pytest

from router_proxy.signals.base import SignalResult
from router_proxy.signals.pii import (
    PiiDetector,
    PiiKind,
    PiiSignal,
    PiiSignalConfig,
    Span,
    find_pii,
    luhn_ok,
    merge,
)
from tests.support.signal_helpers import assert_refused, evaluate


def pii(**kwargs: Any) -> PiiSignal:
    return PiiSignal(PiiSignalConfig(name="pii", type="pii", **kwargs))


def found(text: str, kinds: list[PiiKind] | None = None) -> list[tuple[str, str]]:
    spans = find_pii(text) if kinds is None else find_pii(text, kinds)
    return [(s.kind, text[s.start : s.end]) for s in spans]


def mask(text: str, spans: list[Span]) -> str:
    for span in reversed(spans):
        text = text[: span.start] + f"[{span.kind}]" + text[span.end :]
    return text


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        ("email", "john.doe+tag@mail.example.co.uk"),
        ("credit_card", "4111 1111 1111 1111"),
        ("credit_card", "4111-1111-1111-1111"),
        ("credit_card", "5555555555554444"),
        ("credit_card", "3782 822463 10005"),  # Amex 4-6-5
        ("iban", "DE89 3704 0044 0532 0130 00"),
        ("iban", "GB82WEST12345698765432"),
        ("iban", "FR14 2004 1010 0505 0001 3M02 606"),
        ("ssn", "123-45-6789"),
        ("ssn", "123 45 6789"),
        ("ip", "192.168.1.1"),
        ("ip", "2001:db8::8a2e:370:7334"),
        ("ip", "fe80::1%eth0"),
        ("ip", "::1"),
        ("phone", "+1 650-253-0000"),
        ("phone", "(650) 253-0000"),
        ("phone", "030 1234567"),
        ("phone", "020 7946 0958"),
        ("phone", "06 12 34 56 78"),
        ("phone", "+81 3-1234-5678"),  # international: any region
        ("phone", "+49 (0) 30 1234567"),
    ],
)
def test_finds_each_kind_with_exact_spans(kind: str, value: str) -> None:
    text = f"Bitte notieren: {value}. Danke!"
    assert found(text) == [(kind, value)]


@pytest.mark.parametrize(
    "text",
    [
        "card 4111 1111 1111 1112",  # Luhn fails
        "card 4111 1111-1111 1111",  # mixed separators
        "id 0000000000000000",  # Luhn passes, no issuer starts with 0
        "pi 3.1415926535897932384",  # digits after a decimal point
        "iban DE89 3704 0044 0532 0130 01",  # mod 97 fails
        "iban XX89 3704 0044 0532 0130 00",  # no such country
        "ssn 000-12-3456",
        "ssn 666-12-3456",
        "ssn 912-12-3456",
        "ssn 123-00-6789",
        "ssn 123-45-0000",
        "ssn 123-45 6789",
        "ssn 123456789",  # bare nine digits: too ambiguous
        "ip 256.1.1.1",
        "ip 01.02.03.04",
        "version 1.2.3",
        "time 12:30:45",
        "std::vector and Foo::Bar",
        "mac 00:1A:2B:3C:4D:5E",
        "date 2024-05-01 10:00",
        "ISBN 978-3-16-148410-0",
        "order 12345",
        "ratio 0.672690382851171",
        "not an email: a@b, x@localhost",
    ],
)
def test_lookalikes_are_not_pii(text: str) -> None:
    assert found(text) == []


def test_luhn() -> None:
    assert luhn_ok("4111111111111111")
    assert luhn_ok("79927398713")
    assert not luhn_ok("79927398710")


def test_iban_stops_at_its_country_length() -> None:
    text = "IBAN DE89 3704 0044 0532 0130 00 BIC COBADEFFXXX"
    assert found(text) == [("iban", "DE89 3704 0044 0532 0130 00")]


def test_ip_is_not_also_a_phone_number() -> None:
    assert found("server at 28.37.206.210 is down") == [("ip", "28.37.206.210")]
    assert found("server at 28.37.206.210 is down", ["phone"]) == []


def test_spans_index_unicode_text_and_masking_is_exact() -> None:
    text = "Grüße von Jürgen — jürgen.x@example.de? Nein: juergen@example.de, ☎ +49 30 1234567 🙂"
    spans = find_pii(text)
    assert [text[s.start : s.end] for s in spans] == ["juergen@example.de", "+49 30 1234567"]
    assert mask(text, spans) == (
        "Grüße von Jürgen — jürgen.x@example.de? Nein: [email], ☎ [phone] 🙂"
    )


def test_overlapping_matches_merge_into_one_span() -> None:
    text = "write to +16502530000@example.com"
    spans = find_pii(text)
    assert spans == [Span("email", 9, len(text))]  # the phone inside is covered
    merged = merge([Span("phone", 5, 12), Span("ip", 0, 8), Span("email", 20, 25)])
    assert merged == [Span("ip", 0, 12), Span("email", 20, 25)]  # named after the longest
    assert merge([Span("ip", 0, 5), Span("ssn", 0, 5)]) == [Span("ssn", 0, 5)]
    assert merge([Span("email", 0, 5), Span("ip", 5, 9)]) == [
        Span("email", 0, 5),
        Span("ip", 5, 9),
    ]


def test_only_the_asked_kinds_are_found() -> None:
    text = "mail a.b@example.com, card 4111111111111111, ip 10.0.0.1"
    assert found(text, ["email"]) == [("email", "a.b@example.com")]
    assert [k for k, _ in found(text, ["ip", "credit_card"])] == ["credit_card", "ip"]


def test_phone_regions() -> None:
    us_only = PiiDetector(["phone"], ["us"])  # regions in any case
    assert us_only.find("call (650) 253-0000") != []
    assert us_only.find("ruf 030 1234567 an") == []
    assert us_only.find("ruf +49 30 1234567 an") != []  # international in any case
    international = PiiDetector(["phone"], [])
    assert international.find("call (650) 253-0000") == []
    assert international.find("call +1 650 253 0000") != []


def test_signal_value_and_detail_never_quote_the_data() -> None:
    result = evaluate(pii(), "mail me at jane@example.com or call +1 650 253 0000, +1 650 253 0001")
    assert result == SignalResult(True, "email,phone", "found email x1, phone x2")
    assert "jane" not in result.detail
    clean = evaluate(pii(kinds=["email", "phone"]), "nothing personal here")
    assert clean == SignalResult(False, None, "no email, phone found")


def test_scope_all_reads_system_and_tool_call_arguments() -> None:
    conversation: list[dict[str, Any]] = [
        {"role": "system", "content": "Support agent. Escalate to ops@example.com."},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "charge", "arguments": '{"card": "4111111111111111"}'},
                }
            ],
        },
        {"role": "user", "content": [{"type": "text", "text": "thanks!"}]},
    ]
    assert evaluate(pii(), conversation).value == "credit_card,email"
    assert not evaluate(pii(scope="last_user"), conversation).fired


def test_empty_and_long_texts() -> None:
    assert not evaluate(pii(), "").fired
    assert not evaluate(pii(), [{"role": "user", "content": None}]).fired
    filler = "The quarterly report covers revenue, churn and hiring plans. " * 17_000
    assert len(filler) > 1_000_000
    assert not evaluate(pii(), filler).fired
    at_the_end = evaluate(pii(), filler + " card 4111 1111 1111 1111, mail x@example.org")
    assert at_the_end.value == "credit_card,email"
    numbers = " ".join(str(n * 7919 % 1_000_000_007) for n in range(100_000))
    assert isinstance(evaluate(pii(), numbers).fired, bool)  # bounded phone work, no hang
    for text in ("1" * 1_000_000, ":" * 1_000_000, "a@" * 500_000, "1." * 500_000):
        assert not evaluate(pii(), text).fired


def test_bad_configs_are_refused() -> None:
    config = PiiSignalConfig(name="p", type="pii", kinds=["phone", "email", "phone"])
    assert config.kinds == ["email", "phone"]
    assert PiiSignalConfig(name="p", type="pii", phone_regions=["de", "US"]).phone_regions == [
        "DE",
        "US",
    ]
    assert_refused(
        PiiSignalConfig,
        {"name": "p", "type": "pii"},
        [
            ({"kinds": ["passport"]}, "Input should be 'credit_card'"),
            ({"kinds": []}, "at least 1 item"),
            ({"phone_regions": ["XY"]}, "unknown phone region"),
            ({"kind": ["email"]}, "Extra inputs are not permitted"),
        ],
    )


def test_value_predicates_point_to_a_per_kind_signal() -> None:
    problem = PiiSignalConfig(name="pii", type="pii").accepts_value("email")
    assert problem is not None
    assert "kinds: [email]" in problem
    assert PiiSignal.cost_rank == 20
