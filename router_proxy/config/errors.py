"""Config mistakes, each named by its YAML path and line."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

PathPart = str | int
Path = tuple[PathPart, ...]


def format_path(path: Path) -> str:
    """``("decisions", 2, "route")`` -> ``decisions[2].route``; odd keys are quoted."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.replace("_", "").replace("-", "").isalnum():
            out += f".{part}" if out else part
        else:
            out += f'["{part}"]'
    return out or "<root>"


@dataclass(frozen=True)
class ConfigIssue:
    path: Path
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f" (line {self.line})" if self.line is not None else ""
        return f"{format_path(self.path)}: {self.message}{where}"


class ConfigError(Exception):
    """A config that must not be served. ``issues`` holds every mistake found."""

    def __init__(self, issues: Sequence[ConfigIssue], source: str = "config") -> None:
        self.issues = sorted(issues, key=lambda issue: issue.line or 0)
        self.source = source
        lines = "\n".join(f"  {issue}" for issue in self.issues)
        super().__init__(f"{source}: {len(self.issues)} error(s)\n{lines}")
