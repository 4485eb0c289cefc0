"""What the process shares with everything built from a config (signals, selectors)."""

from __future__ import annotations

from dataclasses import dataclass

from router_proxy.embeddings.shared import SharedEncoder


@dataclass(frozen=True, slots=True)
class Resources:
    # Loads on first .get(): a policy with no embedding signal or learned selector never
    # loads a model.
    encoder: SharedEncoder
