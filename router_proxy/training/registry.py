"""Trainers by algorithm name (`router-proxy train --algorithm NAME`). A file plus a line.

A trainer turns TrainingData (rows, cached prompt embeddings, models) and its options into
an Artifact that the selector of the same name serves.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from router_proxy.registry import Registry
from router_proxy.selection.artifact import Artifact
from router_proxy.training.cascade_train import train_cascade
from router_proxy.training.cascal_train import train_cascal
from router_proxy.training.data import TrainingData
from router_proxy.training.knn_train import train_knn
from router_proxy.training.mf_train import train_mf

Trainer = Callable[[TrainingData, dict[str, Any]], Artifact]

TRAINERS: Registry[Trainer] = Registry(
    "trainer",
    [("knn", train_knn), ("mf", train_mf), ("cascal", train_cascal), ("cascade", train_cascade)],
)
# Trainers that learn from `responses` only and must never see `scores`.
QUERY_ONLY = frozenset({"cascal"})
