"""The language signal: fastText lid.176 with abstention on short or wordless text."""

from __future__ import annotations

from typing import Any

import pytest

from router_proxy.signals.base import SignalResult
from router_proxy.signals.language import (
    DETECTABLE,
    ISO_639_1,
    LanguageSignal,
    LanguageSignalConfig,
    clean,
)
from tests.support.signal_helpers import assert_refused, evaluate


def language(**kwargs: Any) -> LanguageSignal:
    return LanguageSignal(LanguageSignalConfig(name="lang", type="language", **kwargs))


@pytest.mark.parametrize(
    ("prompt", "code"),
    [
        ("Wie kann ich eine Liste in Python umkehren?", "de"),
        ("Peux-tu expliquer comment fonctionnent les vaccins ?", "fr"),
        ("¿Por qué el cielo es azul?", "es"),
        ("Qual è la capitale dell'Australia?", "it"),
        ("Kun je uitleggen hoe vaccins werken?", "nl"),
        ("Объясни рекурсию простыми словами", "ru"),
        ("如何在Python中反转列表", "zh"),
        ("海についての短い詩を書いて。", "ja"),
        ("하늘은 왜 파란가요?", "ko"),
        ("لماذا السماء زرقاء؟", "ar"),
        ("How do I reverse a list in Python?", "en"),
    ],
)
def test_detects_the_language_of_short_prompts(prompt: str, code: str) -> None:
    result = evaluate(language(), prompt)  # no languages: fires on any confident answer
    assert (result.fired, result.value) == (True, code)


def test_fires_only_for_the_listed_languages() -> None:
    signal = language(languages=["de", "fr"])
    german = evaluate(signal, "Fasse bitte diesen Artikel zusammen")
    assert (german.fired, german.value) == (True, "de")
    assert german.detail.startswith("'de' at 0.")
    english = evaluate(signal, "Please summarize this article for me")
    assert (english.fired, english.value) == (False, "en")
    assert english.detail.endswith("not one of de, fr")


@pytest.mark.parametrize(
    "prompt", ["", "   ", "1234 5678", "😀😀😀", "...", "https://example.com/a?b=c"]
)
def test_wordless_text_gets_no_language(prompt: str) -> None:
    result = evaluate(language(), prompt)
    assert result == SignalResult(False, None, "no words to read in last_user")


@pytest.mark.parametrize("prompt", ["hi", "lol", "asdf qwer", "x = y + 1", "npm install"])
def test_very_short_text_is_not_labelled_confidently(prompt: str) -> None:
    result = evaluate(language(), prompt)
    assert (result.fired, result.value) == (False, None)
    assert result.detail.startswith("unsure:")


def test_min_confidence_is_configurable() -> None:
    lenient = language(min_confidence=0.05)
    assert evaluate(lenient, "lol").fired
    strict = language(min_confidence=1.0)
    assert not evaluate(strict, "Wie kann ich eine Liste in Python umkehren?").fired


def test_code_urls_and_numbers_do_not_decide() -> None:
    prompt = (
        "Wie sortiere ich diese Liste nach Namen? Siehe https://docs.python.org/3/howto/sorting.html\n"
        "```python\nusers = sorted(users, key=lambda user: user.name)\nprint(users[0:10])\n```"
    )
    assert evaluate(language(), prompt).value == "de"
    assert "sorted" not in clean(prompt)
    assert evaluate(language(), "这个函数 `def foo(x): return x` 有什么问题").value == "zh"


def test_all_caps_mixed_scripts_and_accents() -> None:
    assert evaluate(language(), "WIE KANN ICH MEIN PASSWORT ZURÜCKSETZEN").value == "de"
    mixed = evaluate(language(), "Привет! Can you help me with my English homework, please?")
    assert mixed.value == "en"  # the bulk of the words
    assert evaluate(language(), "Qu'est-ce que c'est ?").value == "fr"


def test_scopes_and_list_of_parts() -> None:
    conversation: list[dict[str, Any]] = [
        {"role": "system", "content": "You are a helpful assistant who answers in English."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Peux-tu m'aider à écrire une lettre de motivation ?"},
                {"type": "image_url", "image_url": {"url": "http://x/cv.png"}},
            ],
        },
    ]
    assert evaluate(language(languages=["fr"]), conversation).fired
    later: list[dict[str, Any]] = [
        *conversation,
        {"role": "assistant", "content": "Bien sûr."},
        {
            "role": "user",
            "content": "Eigentlich lieber auf Deutsch, bitte schreib sie auf Deutsch.",
        },
    ]
    assert evaluate(language(), later).value == "de"  # last_user reads the last turn only
    both = evaluate(language(scope="user"), later)  # two languages: a split, hesitant vote
    assert "'de'" in both.detail or "'fr'" in both.detail


def test_very_long_prompts_read_head_and_tail() -> None:
    text = "Erkläre mir bitte, wie das Verfahren funktioniert und was zu beachten ist. " * 15_000
    assert len(text) > 1_000_000
    assert evaluate(language(languages=["de"]), text).fired
    assert len(clean(text)) < 5_000
    assert evaluate(language(), "x" * 1_000_000).value is None


def test_codes_are_validated() -> None:
    config = LanguageSignalConfig(name="l", type="language", languages=["DE", " fr "])
    assert config.languages == ["de", "fr"]
    assert_refused(
        LanguageSignalConfig,
        {"name": "l", "type": "language"},
        [
            ({"languages": ["xx"]}, "'xx' is not an ISO 639-1 two-letter language code"),
            ({"languages": ["pt-BR"]}, "write 'pt'"),
            ({"languages": ["aa"]}, "cannot recognise 'aa'"),  # Afar
            ({"min_confidence": 1.5}, "less than or equal to 1"),
            ({"language": "de"}, "Extra inputs are not permitted"),
        ],
    )
    assert DETECTABLE <= ISO_639_1


def test_value_predicates_take_language_codes() -> None:
    anything = LanguageSignalConfig(name="lang", type="language")
    assert anything.accepts_value("de") is None
    assert anything.accepts_value("es") is None
    assert "ISO 639-1" in (anything.accepts_value("german") or "")
    assert "ISO 639-1" in (anything.accepts_value(5) or "")
    assert "lower case" in (anything.accepts_value("DE") or "")
    some = LanguageSignalConfig(name="lang", type="language", languages=["de", "fr"])
    assert some.accepts_value("fr") is None
    assert "only fires for de, fr" in (some.accepts_value("es") or "")
    assert LanguageSignal.cost_rank == 30
