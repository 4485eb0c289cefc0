"""``type: domain``: the right label for in-domain prompts, no label for the rest."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from router_proxy.decisions.rules import Equals, RuleParser, holds
from router_proxy.signals.base import SignalResult
from router_proxy.signals.domain import DomainSignal, DomainSignalConfig
from tests.support.signal_helpers import ctx_of, evaluate
from tests.test_embeddings_support import BACKENDS, encoder, run

LABELS = {
    "law": [
        "is this contract legally binding",
        "can my landlord evict me",
        "what are my rights as an employee if I am fired",
        "do I need a lawyer to sue someone",
        "is it legal to record a phone call",
    ],
    "medicine": [
        "what are the side effects of this medication",
        "I have a fever and a sore throat, what should I do",
        "how is high blood pressure treated",
        "is this rash something I should see a doctor about",
        "what is the recommended dose of ibuprofen",
    ],
    "cooking": [
        "give me a recipe for dinner",
        "how long do I cook pasta",
        "what can I make with chicken and rice",
        "how do I make a sauce thicker",
        "vegetarian meal ideas for the week",
    ],
}
IN_DOMAIN = [
    ("law", "My employer fired me without notice, is that legal?"),
    ("law", "Can I break my apartment lease early without paying a penalty?"),
    ("medicine", "I've had a headache and a high temperature for two days."),
    ("medicine", "Can I take paracetamol while on antibiotics?"),
    ("cooking", "How do I make fluffy pancakes?"),
    ("cooking", "Suggest a vegan lasagna recipe."),
]
OUT_OF_DOMAIN = [
    "Plan a three-day trip to Lisbon.",
    "Write a poem about the ocean at night.",
    "How do I center a div with CSS?",
    "Who won the football World Cup in 2014?",
    "hello",
]


def config(**kwargs: Any) -> DomainSignalConfig:
    return DomainSignalConfig.model_validate(
        {"name": "domain", "type": "domain", "labels": LABELS, **kwargs}
    )


def signal(backend: str = "static", **kwargs: Any) -> DomainSignal:
    return DomainSignal(config(**kwargs), encoder(backend))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("label", "prompt"), IN_DOMAIN)
def test_picks_the_right_label(backend: str, label: str, prompt: str) -> None:
    result = evaluate(signal(backend), prompt)
    assert (result.fired, result.value) == (True, label), result.detail
    assert "closest example" in result.detail


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("prompt", OUT_OF_DOMAIN)
def test_out_of_domain_prompts_get_no_label(backend: str, prompt: str) -> None:
    result = evaluate(signal(backend), prompt)
    assert (result.fired, result.value) == (False, None), result.detail
    assert result.detail.startswith("no label")


def test_min_margin_refuses_a_close_call() -> None:
    prompt = "My employer fired me without notice, is that legal?"
    result = evaluate(signal(min_margin=100), prompt)
    assert (result.fired, result.value) == (False, None)
    assert "ahead by" in result.detail
    assert "law" in result.detail


def test_min_confidence_refuses_a_weak_best() -> None:
    result = evaluate(signal(min_confidence=100), "How do I make pancakes?")
    assert (result.fired, result.value) == (False, None)
    assert "best cooking" in result.detail


def test_one_label_needs_no_margin() -> None:
    single = signal(labels={"cooking": LABELS["cooking"]})
    result = evaluate(single, "Suggest a vegan lasagna recipe.")
    assert result.value == "cooking"


def test_edge_inputs() -> None:
    assert evaluate(signal(), "") == SignalResult(False, None, "no text in last_user")
    parts = [{"type": "text", "text": "Can I take paracetamol while on antibiotics?"}]
    assert evaluate(signal(), [{"role": "user", "content": parts}]).value == "medicine"
    for odd in ("法律の質問があります", "😀", "\ud800", "recipe " * 300_000):
        assert evaluate(signal(), odd).value in (None, *LABELS)


def test_accepts_only_known_labels() -> None:
    cfg = config()
    assert cfg.accepts_value("law") is None
    problem = cfg.accepts_value("finance")
    assert problem is not None
    assert "'finance'" in problem
    assert "cooking, law, medicine" in problem
    assert cfg.accepts_value(True) is not None


def test_rules_use_labels() -> None:
    parser = RuleParser({"domain": config()})
    rule = parser.parse({"domain": "law"}, ("decisions", 0, "when"))
    assert parser.errors == []
    assert rule == Equals("domain", "law")
    parser.parse({"domain": "finance"}, ("decisions", 1, "when"))
    assert len(parser.errors) == 1
    assert "known labels: cooking, law, medicine" in parser.errors[0][1]

    built = signal()

    async def resolve(name: str) -> SignalResult:
        return await built.evaluate(ctx_of("Can my landlord keep my deposit?"))

    assert run(holds(rule, resolve))
    assert not run(holds(Equals("domain", "medicine"), resolve))


@pytest.mark.parametrize(
    "bad",
    [
        {"labels": {}},
        {"labels": {"law": []}},
        {"labels": {"law": [" "]}},
        {"labels": {"bad label": ["x"]}},
        {"min_margin": -1},
        {"artifact": "x.bin"},
    ],
)
def test_config_errors(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        config(**bad)
