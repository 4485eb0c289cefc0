"""Signals by their YAML ``type:``. Adding one is a file plus a line here."""

from __future__ import annotations

from typing import Any

from router_proxy.config.base import SignalConfigBase
from router_proxy.signals.base import Signal
from router_proxy.signals.keyword import KeywordSignal

SIGNAL_TYPES: dict[str, type[Signal[Any]]] = {
    "keyword": KeywordSignal,
}


def build_signal(config: SignalConfigBase) -> Signal[Any]:
    return SIGNAL_TYPES[config.type](config)
