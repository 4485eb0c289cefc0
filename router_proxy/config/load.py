"""Load a policy file: YAML -> ``${VAR}`` interpolation -> pydantic -> cross-references.

Every mistake found is reported at once, each with its YAML path and line.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path as FilePath
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from router_proxy.config.errors import ConfigError, ConfigIssue, Path, format_path
from router_proxy.config.references import check_references
from router_proxy.config.schema import Config
from router_proxy.config.source import SourceMap, Unset, interpolate, parse_yaml
from router_proxy.config.suggest import did_you_mean


def read_yaml_file(path: str | FilePath) -> str:
    """A YAML file's text; a file that cannot be read is a ConfigError naming it."""
    try:
        return FilePath(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            [ConfigIssue((), f"cannot read file: {exc.strerror}")], str(path)
        ) from exc


def load_config(
    path: str | FilePath, env: Mapping[str, str] | None = None
) -> tuple[Config, SourceMap]:
    return load_config_text(read_yaml_file(path), source=str(path), env=env)


def check_config(
    path: str | FilePath, env: Mapping[str, str] | None = None
) -> tuple[Config, dict[str, list[str]]]:
    """For commands that never call a model (validate, explain): an unset ``${VAR}`` stays
    as written instead of being an error. Returns the config and each unset variable's
    places (``providers.openai.api_key (line 3)``); never a value."""
    config, source_map, unset = _load(read_yaml_file(path), str(path), env, keep_unset=True)
    places: dict[str, list[str]] = {}
    for u in unset:
        line = source_map.line(u.path)
        where = f" (line {line})" if line is not None else ""
        places.setdefault(u.name, []).append(format_path(u.path) + where)
    return config, places


def load_config_text(
    text: str, *, source: str = "config", env: Mapping[str, str] | None = None
) -> tuple[Config, SourceMap]:
    config, source_map, _ = _load(text, source, env, keep_unset=False)
    return config, source_map


def _load(
    text: str, source: str, env: Mapping[str, str] | None, *, keep_unset: bool
) -> tuple[Config, SourceMap, list[Unset]]:
    data, source_map, issues = parse_yaml(text)
    if issues and data is None:
        raise ConfigError(issues, source)
    if not isinstance(data, dict):
        raise ConfigError([ConfigIssue((), "the policy must be a YAML mapping", 1)], source)
    data, unset = interpolate(data, env, keep_unset=keep_unset)
    if not keep_unset:
        issues += [source_map.issue(u.path, u.message) for u in unset]
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        found = validation_issues(exc, data, source_map, Config)
        issues += [_blame_unset(issue, unset) for issue in found] if keep_unset else found
        raise ConfigError(issues, source) from None
    issues += [source_map.issue(p, msg) for p, msg in check_references(config)]
    if issues:
        raise ConfigError(issues, source)
    return config, source_map, unset


def _blame_unset(issue: ConfigIssue, unset: list[Unset]) -> ConfigIssue:
    """A kept ``${VAR}`` that a key cannot take (``port: ${PORT}``): the missing value is
    the mistake to report, the type error only its symptom."""
    names = [u.name for u in unset if u.path == issue.path]
    if not names:
        return issue
    message = f"environment variable {names[0]} is not set, and this key cannot be checked"
    return ConfigIssue(issue.path, f"{message} without it ({issue.message})", issue.line)


def validation_issues(
    exc: ValidationError, data: Any, source_map: SourceMap, model: type[BaseModel] | None = None
) -> list[ConfigIssue]:
    """Pydantic's errors about ``data`` (parsed from YAML), each named by its YAML path and
    line; for any YAML file validated by a pydantic model (policies, task lists). Given
    the ``model`` that failed, an unknown key also names the nearest known one."""
    return [_issue(err, data, source_map, model) for err in exc.errors()]


def _data_path(loc: tuple[int | str, ...], data: Any) -> Path:
    """Pydantic's loc with the entries that are not in the data (discriminator tags,
    union member names) dropped, so it names a place in the YAML file."""
    path: list[int | str] = []
    node = data
    for part in loc:
        if isinstance(node, dict) and part in node:  # noqa: SIM114
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        elif isinstance(node, dict) and (node.get("type") == part or str(part)[:1].isupper()):
            continue  # a tag pydantic inserted, not a key of the file
        else:
            node = None  # a missing key: name it, nothing lies below it
        path.append(part)
    return tuple(path)


def _issue(
    err: ErrorDetails, data: Any, source_map: SourceMap, model: type[BaseModel] | None
) -> ConfigIssue:
    path = _data_path(tuple(err["loc"]), data)
    kind, ctx = err["type"], err.get("ctx") or {}
    if kind == "missing":
        message = "required key is missing"
    elif kind == "extra_forbidden":
        near = did_you_mean(model, err["loc"]) if model is not None else None
        message = f"unknown key (did you mean '{near}'?)" if near else "unknown key"
    elif kind == "union_tag_invalid":
        message = f"unknown type '{ctx.get('tag')}' (expected one of: {ctx.get('expected_tags')})"
    elif kind == "union_tag_not_found":
        message = f"`type` is required (one of: {ctx.get('expected_tags')})"
    else:
        message = err["msg"].removeprefix("Value error, ")
        message = message[:1].lower() + message[1:]
        if not isinstance(err["input"], dict | list):
            message += f" (got {err['input']!r})"
    return source_map.issue(path, message)
