"""TASKS.yaml: what the users ask, described in plain language, and how answers look.

    tasks:
      - name: arithmetic
        description: Word problems about everyday sums, answered with one number.
        format: number            # multiple_choice | number | short_text | code
        topics: [shopping, travel] # optional; the generator cycles through them
        examples: ["A bus ..."]    # optional; style hints for the generator

Errors name the YAML path and line, as for policies.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError

from router_proxy.answers.extract import Format, options_of
from router_proxy.config.base import StrictModel
from router_proxy.config.errors import ConfigError, ConfigIssue
from router_proxy.config.load import read_yaml_file, validation_issues
from router_proxy.config.source import parse_yaml

FormatName = Literal["multiple_choice", "number", "short_text", "code"]


def _two_options(question: str) -> str | None:
    if len(options_of(question)) < 2:
        return "a multiple-choice question without options (lines 'A) ...', 'B) ...')"
    return None


def _nothing(question: str) -> str | None:
    return None


@dataclass(frozen=True)
class AnswerFormat:
    """How a task's answers look: the extraction format of ``answers.py`` and what a
    generated question must contain. Templates are ``generate_<name>.txt`` and
    ``answer_<name>.txt``."""

    name: FormatName
    extract_as: Format
    check_question: Callable[[str], str | None]  # why a question is malformed, or None


FORMATS: dict[str, AnswerFormat] = {
    f.name: f
    for f in (
        AnswerFormat("multiple_choice", "choice", _two_options),
        AnswerFormat("number", "number", _nothing),
        AnswerFormat("short_text", "text", _nothing),
        AnswerFormat("code", "code", _nothing),
    )
}


class TaskSpec(StrictModel):
    name: str = Field(
        min_length=1,
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="the rows' `task`; query ids are NAME-00000, NAME-00001, ...",
    )
    description: str = Field(min_length=1, description="the users' requests, in plain words")
    format: FormatName = Field(description="how answers are compared for consensus")
    topics: list[str] = Field(
        default_factory=list, description="subjects the generator cycles through (optional)"
    )
    examples: list[str] = Field(
        default_factory=list, description="example requests, as style hints (optional)"
    )

    @property
    def answer_format(self) -> AnswerFormat:
        return FORMATS[self.format]

    def fingerprint(self) -> str:
        """Changes when anything that shapes the generated queries changes."""
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:16]


class TasksFile(StrictModel):
    tasks: list[TaskSpec] = Field(min_length=1)


def load_tasks(path: str | Path) -> list[TaskSpec]:
    return parse_tasks(read_yaml_file(path), source=str(path))


def parse_tasks(text: str, *, source: str = "tasks") -> list[TaskSpec]:
    data, source_map, issues = parse_yaml(text)
    if issues and data is None:
        raise ConfigError(issues, source)
    if not isinstance(data, dict):
        raise ConfigError([ConfigIssue((), "expected a mapping with a `tasks` list", 1)], source)
    try:
        tasks = TasksFile.model_validate(data).tasks
    except ValidationError as exc:
        raise ConfigError(issues + validation_issues(exc, data, source_map), source) from None
    seen: set[str] = set()
    for i, task in enumerate(tasks):
        if task.name in seen:
            issues.append(source_map.issue(("tasks", i, "name"), f"duplicate task '{task.name}'"))
        seen.add(task.name)
    if issues:
        raise ConfigError(issues, source)
    return tasks
