"""The ``tracing:`` section: OpenTelemetry spans exported over OTLP (off unless set)."""

from __future__ import annotations

import importlib.util
from typing import Literal

from pydantic import Field, SecretStr, model_validator

from router_proxy.config.base import StrictModel


class TracingConfig(StrictModel):
    """Where and how much to trace. With no ``tracing:`` section nothing is traced and the
    OpenTelemetry SDK is never imported."""

    endpoint: str = Field(
        min_length=1,
        description="the OTLP receiver: http://collector:4318/v1/traces for "
        "http/protobuf (the full traces URL), collector:4317 for grpc",
    )
    protocol: Literal["http/protobuf", "grpc"] = Field(
        default="http/protobuf",
        description="grpc needs `pip install opentelemetry-exporter-otlp-proto-grpc`",
    )
    service_name: str = Field(default="router-proxy", min_length=1)
    sample_ratio: float = Field(
        default=1.0,
        ge=0.0,
        le=1.0,
        description="share of requests traced; a caller's `traceparent` sampled flag wins",
    )
    headers: dict[str, SecretStr] = Field(
        default_factory=dict, description="sent with every export (e.g. an API key)"
    )
    timeout: float = Field(default=10.0, gt=0, description="seconds per export")
    batch_delay_ms: int = Field(
        default=5000, ge=1, description="the longest a span waits before it is exported"
    )
    max_queue: int = Field(
        default=2048, ge=1, description="spans held for export; beyond it new ones are dropped"
    )

    @model_validator(mode="after")
    def _exporter_installed(self) -> TracingConfig:
        """Refused at load (the old config keeps serving), not at the first request."""
        wire = "grpc" if self.protocol == "grpc" else "http"
        needed = {
            "opentelemetry.sdk": "router-proxy[tracing]",
            f"opentelemetry.exporter.otlp.proto.{wire}": (
                "router-proxy[tracing]"
                if wire == "http"
                else "opentelemetry-exporter-otlp-proto-grpc"
            ),
        }
        for module, package in needed.items():
            if not _installed(module):
                raise ValueError(f"tracing needs {module}: pip install '{package}'")
        return self


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False
