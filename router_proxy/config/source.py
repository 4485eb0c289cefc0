"""Reading YAML while remembering where each value came from, and ``${VAR}`` interpolation.

Interpolation runs on parsed string values, not on the raw text, so an environment value
can never inject YAML structure, and line numbers stay those of the file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from router_proxy.config import bounded_yaml
from router_proxy.config.errors import ConfigIssue, Path

_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class SourceMap:
    """YAML path -> 1-based line; a path missing from the file maps to its nearest parent."""

    def __init__(self, lines: dict[Path, int]) -> None:
        self._lines = lines

    def line(self, path: Path) -> int | None:
        for end in range(len(path), -1, -1):
            found = self._lines.get(path[:end])
            if found is not None:
                return found
        return None

    def issue(self, path: Path, message: str) -> ConfigIssue:
        return ConfigIssue(path, message, self.line(path))


def _index(node: yaml.Node, path: Path, lines: dict[Path, int], issues: list[ConfigIssue]) -> None:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node)
            child = (*path, key)
            if key in seen:
                issues.append(ConfigIssue(child, "duplicate key", key_node.start_mark.line + 1))
            seen.add(key)
            lines[child] = key_node.start_mark.line + 1
            _index(value_node, child, lines, issues)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index(item, (*path, i), lines, issues)


def parse_yaml(text: str) -> tuple[Any, SourceMap, list[ConfigIssue]]:
    """Parse YAML into plain data plus a SourceMap; syntax errors, and documents that would
    expand past ``bounded_yaml``'s limits, become issues."""
    try:
        data, node = bounded_yaml.load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        return None, SourceMap({}), [ConfigIssue((), f"invalid YAML: {problem}", line)]
    lines: dict[Path, int] = {}
    issues: list[ConfigIssue] = []
    if node is not None:
        _index(node, (), lines, issues)
    return data, SourceMap(lines), issues


@dataclass(frozen=True)
class Unset:
    """A ``${VAR}`` without a default whose variable is not set, where the YAML uses it."""

    path: Path
    name: str

    @property
    def message(self) -> str:
        return f"environment variable {self.name} is not set"


def interpolate(
    data: Any, env: Mapping[str, str] | None = None, path: Path = (), *, keep_unset: bool = False
) -> tuple[Any, list[Unset]]:
    """Replace ``${VAR}`` / ``${VAR:-default}`` in every string; ``$$`` is a literal ``$``.

    Returns the new data and each variable that is unset with no default. Such a reference
    becomes "", or stays as written with ``keep_unset`` (a placeholder for commands that
    never use the value: never a secret, and it names itself in any error about it).
    """
    env = os.environ if env is None else env
    missing: list[Unset] = []

    def walk(value: Any, at: Path) -> Any:
        if isinstance(value, str):
            if "$" not in value:
                return value

            def sub(match: re.Match[str]) -> str:
                if match.group(0) == "$$":
                    return "$"
                name, default = match.group(1), match.group(2)
                found = env.get(name)
                if found is not None and (found or default is None):
                    return found
                if default is not None:
                    return default
                missing.append(Unset(at, name))
                return match.group(0) if keep_unset else ""

            return _VAR.sub(sub, value)
        if isinstance(value, dict):
            return {k: walk(v, (*at, k)) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, (*at, i)) for i, v in enumerate(value)]
        return value

    return walk(data, path), missing
