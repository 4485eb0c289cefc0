"""Helpers for tests/test_deployment.py: a small Dockerfile reader, the metric names and
labels the code exports, and a PromQL checker for the dashboard and the alert rules."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client.metrics import MetricWrapperBase

from router_proxy.observability.metrics import Metrics

# --- Dockerfile ------------------------------------------------------------------------


@dataclass
class Stage:
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args(self, instruction: str) -> list[str]:
        return [args for name, args in self.instructions if name == instruction]

    def env(self) -> dict[str, str]:
        env: dict[str, str] = {}
        for args in self.args("ENV"):
            for item in shlex.split(args):
                key, _, value = item.partition("=")
                env[key] = value
        return env

    def user(self) -> str:
        users = self.args("USER")
        return users[-1].split(":")[0] if users else ""


@dataclass
class Dockerfile:
    stages: list[Stage]

    @classmethod
    def parse(cls, path: Path) -> Dockerfile:
        """Instructions by stage: comments dropped, `\\` continuations joined."""
        logical: list[str] = []
        pending = ""
        for raw in path.read_text(encoding="utf-8").splitlines():
            line = raw.strip()
            if line.startswith("#") or not line:
                continue
            if line.endswith("\\"):
                pending += line[:-1] + " "
                continue
            logical.append(pending + line)
            pending = ""
        stages: list[Stage] = []
        for line in logical:
            name, _, args = line.partition(" ")
            if name.upper() == "FROM":
                stages.append(Stage())
            if stages:
                stages[-1].instructions.append((name.upper(), args.strip()))
        return cls(stages)

    def cmd(self) -> list[str]:
        (*_, cmd) = self.stages[-1].args("CMD")
        parsed: list[str] = json.loads(cmd)
        return parsed


# --- Kubernetes env ---------------------------------------------------------------------


def placeholder_env(entries: list[dict[str, Any]], *, optional: bool) -> dict[str, str]:
    """A container's env as the process would see it: literal values, and a placeholder
    for each Secret reference (the optional ones only when ``optional``)."""
    env: dict[str, str] = {}
    for entry in entries:
        if "value" in entry:
            env[entry["name"]] = str(entry["value"])
            continue
        ref = entry["valueFrom"]["secretKeyRef"]
        if optional or not ref.get("optional", False):
            env[entry["name"]] = f"placeholder-{entry['name'].lower()}"
    return env


# --- metrics ---------------------------------------------------------------------------

SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
}


def exported_metrics() -> dict[str, set[str]]:
    """Every sample name the gateway's registry exposes, with its label names."""
    found: dict[str, set[str]] = {}
    for metric in vars(Metrics()).values():
        if not isinstance(metric, MetricWrapperBase):
            continue
        # prometheus_client keeps name, type and label names on the wrapper itself.
        name, kind, labels = metric._name, metric._type, set(metric._labelnames)
        for suffix in SUFFIXES[kind]:
            found[name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
    return found


def dashboard_queries(path: Path) -> list[str]:
    """The PromQL in a Grafana dashboard: panel targets, variables, annotations."""
    dashboard = json.loads(path.read_text(encoding="utf-8"))
    queries = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    for variable in dashboard.get("templating", {}).get("list", []):
        query = variable.get("query")
        queries.append(query["query"] if isinstance(query, dict) else str(query))
    queries += [a["expr"] for a in dashboard.get("annotations", {}).get("list", []) if "expr" in a]
    return queries


TARGET_LABELS = {"job", "instance"}  # added by Prometheus to every scraped series
METRIC = re.compile(r"\b(router_[a-z0-9_]+)\b")
SELECTOR = re.compile(r"\b(router_[a-z0-9_]+)\s*\{([^}]*)\}")
MATCHER = re.compile(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)")
GROUPING = re.compile(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)")
LABEL_VALUES = re.compile(r"label_values\((?:[^,()]|\([^)]*\))*,\s*(\w+)\s*\)")


class PromQLChecker:
    """Finds metric names the code does not export and labels those metrics do not have.
    Coarse on purpose: labels in a grouping clause are checked against the union of the
    labels of every metric in the same expression."""

    def __init__(self, known: dict[str, set[str]]) -> None:
        self.known = known

    def problems(self, expr: str) -> list[str]:
        names = set(METRIC.findall(expr))
        unknown = sorted(n for n in names if n not in self.known)
        problems = [f"unknown metric {n} in: {expr}" for n in unknown]
        everywhere = set(TARGET_LABELS)
        for name in names - set(unknown):
            everywhere |= self.known[name]
        for name, matchers in SELECTOR.findall(expr):
            allowed = self.known.get(name, set()) | TARGET_LABELS
            problems += [
                f"{name} has no label {label}"
                for label in MATCHER.findall(matchers)
                if label not in allowed
            ]
        grouped = [lbl.strip() for g in GROUPING.findall(expr) for lbl in g.split(",")]
        grouped += LABEL_VALUES.findall(expr)
        problems += [
            f"label {label} is on none of {sorted(names)}"
            for label in grouped
            if label and label not in everywhere
        ]
        return problems
