"""The prompts of ``router-proxy generate``, kept as text files in ``templates/`` (package
data) with ``$name`` placeholders (``string.Template``: braces in code stay literal).

generate.txt              the generator's request; ``$format_rules`` comes from
generate_<format>.txt     how a question and the generator's answer must look
answer_<format>.txt       the system message that asks a pool model for a parseable answer
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from string import Template


@cache
def template(name: str) -> Template:
    source = resources.files(__package__).joinpath("templates", f"{name}.txt")
    return Template(source.read_text(encoding="utf-8").strip())


def render(name: str, **values: object) -> str:
    """The template ``name`` with every placeholder filled (a missing one raises)."""
    return template(name).substitute({k: str(v) for k, v in values.items()})
