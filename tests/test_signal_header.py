"""The header signal: exact values, lists, full-match regexes, every header must match."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import ValidationError

from router_proxy.context import RequestContext
from router_proxy.signals.base import SignalResult
from router_proxy.signals.header import HeaderSignal, HeaderSignalConfig


def header(headers: dict[str, Any]) -> HeaderSignal:
    return HeaderSignal(HeaderSignalConfig(name="h", type="header", headers=headers))


def evaluate(signal: HeaderSignal, headers: dict[str, str]) -> SignalResult:
    ctx = RequestContext.from_prompt("hello")
    ctx.headers = headers  # the server lower-cases names and drops credentials
    return asyncio.run(signal.evaluate(ctx))


def test_exact_value_and_case_insensitive_names() -> None:
    signal = header({"X-Tenant": "acme"})
    assert evaluate(signal, {"x-tenant": "acme"}) == SignalResult(True, True, "x-tenant matched")
    assert evaluate(signal, {"x-tenant": "  acme "}).fired  # surrounding blanks ignored
    assert evaluate(signal, {"x-tenant": "ACME"}) == SignalResult(
        False, False, "x-tenant does not match"
    )
    assert not evaluate(signal, {"x-tenant": "acme-corp"}).fired
    assert evaluate(signal, {}) == SignalResult(False, False, "no x-tenant header")


def test_a_list_matches_any_of_its_values() -> None:
    signal = header({"x-tenant": ["acme", "globex"]})
    assert evaluate(signal, {"x-tenant": "globex"}).fired
    assert not evaluate(signal, {"x-tenant": "initech"}).fired


def test_regex_values_match_the_whole_value() -> None:
    signal = header({"x-client": r"re:mobile-(ios|android)/\d+"})
    assert evaluate(signal, {"x-client": "mobile-ios/17"}).fired
    assert not evaluate(signal, {"x-client": "mobile-ios/17-beta"}).fired
    assert not evaluate(signal, {"x-client": "web mobile-ios/17"}).fired
    ignoring_case = header({"x-tenant": ["re:(?i)acme", "globex"]})
    assert evaluate(ignoring_case, {"x-tenant": "ACME"}).fired
    assert evaluate(ignoring_case, {"x-tenant": "globex"}).fired
    present = header({"x-debug": "re:.+"})
    assert evaluate(present, {"x-debug": "1"}).fired
    assert not evaluate(present, {"x-debug": ""}).fired


def test_every_listed_header_must_match() -> None:
    signal = header({"x-tenant": "acme", "x-tier": ["gold", "platinum"]})
    assert evaluate(signal, {"x-tenant": "acme", "x-tier": "gold"}) == SignalResult(
        True, True, "x-tenant, x-tier matched"
    )
    assert evaluate(signal, {"x-tenant": "acme"}).detail == "no x-tier header"
    assert not evaluate(signal, {"x-tenant": "other", "x-tier": "gold"}).fired


def test_unicode_values_and_long_values() -> None:
    assert evaluate(header({"x-team": "zürich"}), {"x-team": "zürich"}).fired
    assert not evaluate(header({"x-team": "re:[a-z]+"}), {"x-team": "a" * 1_000_000 + "!"}).fired


def test_bad_configs_are_refused() -> None:
    with pytest.raises(ValidationError, match="'authorization' carries credentials"):
        HeaderSignalConfig(name="h", type="header", headers={"Authorization": "Bearer x"})
    with pytest.raises(ValidationError, match="'x-api-key' carries credentials"):
        HeaderSignalConfig(name="h", type="header", headers={"x-api-key": "re:.+"})
    with pytest.raises(ValidationError, match="not a valid regex"):
        HeaderSignalConfig(name="h", type="header", headers={"x-a": "re:(unclosed"})
    with pytest.raises(ValidationError, match="list of values is empty"):
        HeaderSignalConfig(name="h", type="header", headers={"x-a": []})
    with pytest.raises(ValidationError, match="listed twice"):
        HeaderSignalConfig(name="h", type="header", headers={"X-A": "1", "x-a": "2"})
    with pytest.raises(ValidationError, match="not a valid header name"):
        HeaderSignalConfig(name="h", type="header", headers={"x tenant": "acme"})
    with pytest.raises(ValidationError, match="at least 1 item"):
        HeaderSignalConfig(name="h", type="header", headers={})
    with pytest.raises(ValidationError, match="Input should be a valid string"):
        HeaderSignalConfig.model_validate({"name": "h", "type": "header", "headers": {"x-a": 1}})


def test_is_boolean_and_cheapest() -> None:
    config = HeaderSignalConfig(name="h", type="header", headers={"x-a": "1"})
    assert config.accepts_value("1") is not None
    assert HeaderSignal.cost_rank == 0
