"""Selection algorithms by their YAML ``algorithm:`` name. A file plus a line here."""

from __future__ import annotations

from typing import Any

from router_proxy.registry import Registry
from router_proxy.selection.aggregate import AggregateSelector
from router_proxy.selection.base import Selector
from router_proxy.selection.cascade import CascadeSelector
from router_proxy.selection.cascal import CascalSelector
from router_proxy.selection.cheapest import CheapestSelector
from router_proxy.selection.knn import KnnSelector
from router_proxy.selection.latency import LatencySelector
from router_proxy.selection.mf import MfSelector
from router_proxy.selection.multi_call import MultiCallSelector
from router_proxy.selection.split import SplitSelector
from router_proxy.selection.static import StaticSelector
from router_proxy.selection.weighted import WeightedSelector

__all__ = ["SELECTORS", "MultiCallSelector"]

SELECTORS: Registry[type[Selector[Any]]] = Registry(
    "algorithm",
    [
        ("static", StaticSelector),
        ("weighted", WeightedSelector),
        ("split", SplitSelector),
        ("cheapest", CheapestSelector),
        ("latency", LatencySelector),
        ("knn", KnnSelector),
        ("mf", MfSelector),
        ("cascal", CascalSelector),
        ("cascade", CascadeSelector),
        ("aggregate", AggregateSelector),
    ],
)
