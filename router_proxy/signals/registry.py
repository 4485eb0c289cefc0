"""Signals by their YAML ``type:``. Adding one is a file plus a line here."""

from __future__ import annotations

from typing import Any

from router_proxy.registry import Registry
from router_proxy.signals.base import Signal
from router_proxy.signals.conversation import ConversationSignal
from router_proxy.signals.domain import DomainSignal
from router_proxy.signals.embedding import EmbeddingSignal
from router_proxy.signals.header import HeaderSignal
from router_proxy.signals.keyword import KeywordSignal
from router_proxy.signals.language import LanguageSignal
from router_proxy.signals.length import LengthSignal
from router_proxy.signals.pii import PiiSignal

SIGNAL_TYPES: Registry[type[Signal[Any]]] = Registry(
    "signal type",
    [
        ("keyword", KeywordSignal),
        ("length", LengthSignal),
        ("language", LanguageSignal),
        ("pii", PiiSignal),
        ("header", HeaderSignal),
        ("conversation", ConversationSignal),
        ("embedding", EmbeddingSignal),
        ("domain", DomainSignal),
    ],
)
