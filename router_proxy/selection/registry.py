"""Selection algorithms by their YAML ``algorithm:`` name. A file plus a line here."""

from __future__ import annotations

from router_proxy.selection.base import Selector
from router_proxy.selection.static import StaticSelector

SELECTORS: dict[str, type[Selector]] = {
    "static": StaticSelector,
}
