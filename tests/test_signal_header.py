"""The header signal: exact values, lists, full-match regexes, every header must match."""

from __future__ import annotations

from typing import Any

from router_proxy.signals.base import SignalResult
from router_proxy.signals.header import HeaderSignal, HeaderSignalConfig
from tests.support.signal_helpers import assert_refused, evaluate


def header(headers: dict[str, Any]) -> HeaderSignal:
    return HeaderSignal(HeaderSignalConfig(name="h", type="header", headers=headers))


def test_exact_value_and_case_insensitive_names() -> None:
    signal = header({"X-Tenant": "acme"})
    assert evaluate(signal, headers={"x-tenant": "acme"}) == SignalResult(
        True, True, "x-tenant matched"
    )
    assert evaluate(signal, headers={"x-tenant": "  acme "}).fired  # surrounding blanks ignored
    assert evaluate(signal, headers={"x-tenant": "ACME"}) == SignalResult(
        False, False, "x-tenant does not match"
    )
    assert not evaluate(signal, headers={"x-tenant": "acme-corp"}).fired
    assert evaluate(signal, headers={}) == SignalResult(False, False, "no x-tenant header")


def test_a_list_matches_any_of_its_values() -> None:
    signal = header({"x-tenant": ["acme", "globex"]})
    assert evaluate(signal, headers={"x-tenant": "globex"}).fired
    assert not evaluate(signal, headers={"x-tenant": "initech"}).fired


def test_regex_values_match_the_whole_value() -> None:
    signal = header({"x-client": r"re:mobile-(ios|android)/\d+"})
    assert evaluate(signal, headers={"x-client": "mobile-ios/17"}).fired
    assert not evaluate(signal, headers={"x-client": "mobile-ios/17-beta"}).fired
    assert not evaluate(signal, headers={"x-client": "web mobile-ios/17"}).fired
    ignoring_case = header({"x-tenant": ["re:(?i)acme", "globex"]})
    assert evaluate(ignoring_case, headers={"x-tenant": "ACME"}).fired
    assert evaluate(ignoring_case, headers={"x-tenant": "globex"}).fired
    present = header({"x-debug": "re:.+"})
    assert evaluate(present, headers={"x-debug": "1"}).fired
    assert not evaluate(present, headers={"x-debug": ""}).fired


def test_every_listed_header_must_match() -> None:
    signal = header({"x-tenant": "acme", "x-tier": ["gold", "platinum"]})
    assert evaluate(signal, headers={"x-tenant": "acme", "x-tier": "gold"}) == SignalResult(
        True, True, "x-tenant, x-tier matched"
    )
    assert evaluate(signal, headers={"x-tenant": "acme"}).detail == "no x-tier header"
    assert not evaluate(signal, headers={"x-tenant": "other", "x-tier": "gold"}).fired


def test_unicode_values_and_long_values() -> None:
    assert evaluate(header({"x-team": "zürich"}), headers={"x-team": "zürich"}).fired
    assert not evaluate(
        header({"x-team": "re:[a-z]+"}), headers={"x-team": "a" * 1_000_000 + "!"}
    ).fired


def test_bad_configs_are_refused() -> None:
    assert_refused(
        HeaderSignalConfig,
        {"name": "h", "type": "header"},
        [
            ({"headers": {"Authorization": "Bearer x"}}, "'authorization' carries credentials"),
            ({"headers": {"x-api-key": "re:.+"}}, "'x-api-key' carries credentials"),
            ({"headers": {"x-a": "re:(unclosed"}}, "not a valid regex"),
            ({"headers": {"x-a": []}}, "list of values is empty"),
            ({"headers": {"X-A": "1", "x-a": "2"}}, "listed twice"),
            ({"headers": {"x tenant": "acme"}}, "not a valid header name"),
            ({"headers": {}}, "at least 1 item"),
            ({"headers": {"x-a": 1}}, "Input should be a valid string"),
        ],
    )


def test_is_boolean_and_cheapest() -> None:
    config = HeaderSignalConfig(name="h", type="header", headers={"x-a": "1"})
    assert config.accepts_value("1") is not None
    assert HeaderSignal.cost_rank == 0
