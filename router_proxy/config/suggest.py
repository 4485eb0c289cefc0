"""``did you mean 'port'?`` for an unknown key: the nearest key the model at that place
takes, found by walking the pydantic model along the error's location."""

from __future__ import annotations

import difflib
import types
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel


def did_you_mean(model: type[BaseModel], loc: Sequence[int | str]) -> str | None:
    """The known key nearest to ``loc[-1]`` (an unknown key) where it was written, or
    None when no key is close or the walk cannot tell which model that is."""
    if not loc or not isinstance(loc[-1], str):
        return None
    node: Any = model
    for part in loc[:-1]:
        node = _step(node, part)
        if node is None:
            return None
    owners = _options(node)
    if len(owners) != 1 or not _is_model(owners[0]):
        return None
    keys = [field.alias or name for name, field in owners[0].model_fields.items()]
    close = difflib.get_close_matches(loc[-1], keys, n=1)
    return close[0] if close else None


def _step(node: Any, part: int | str) -> Any:
    """The type found at ``part`` below ``node``, or None."""
    options = _options(node)
    if len(options) > 1:
        # Pydantic names the member of a union it tried: its tag, or its class name.
        return next((o for o in options if _is_model(o) and _tagged(o, part)), None)
    if not options:
        return None
    only = options[0]
    if _is_model(only):
        field = next((f for name, f in only.model_fields.items() if part in (name, f.alias)), None)
        return None if field is None else field.annotation
    origin, args = get_origin(only), get_args(only)
    if isinstance(origin, type) and issubclass(origin, Mapping) and len(args) == 2:
        return args[1]
    if isinstance(origin, type) and issubclass(origin, Sequence) and len(args) == 1:
        return args[0]
    return None


def _options(node: Any) -> list[Any]:
    """``node`` without Annotated and None: the members of a union, else itself."""
    while get_origin(node) is Annotated:
        node = get_args(node)[0]
    if get_origin(node) in (Union, types.UnionType):
        return [o for a in get_args(node) for o in _options(a) if o is not type(None)]
    return [node]


def _is_model(node: Any) -> bool:
    return isinstance(node, type) and issubclass(node, BaseModel)


def _tagged(model: type[BaseModel], tag: int | str) -> bool:
    """Whether ``tag`` is the model's class name or a value of one of its Literal keys
    (a discriminator such as ``type: openai``)."""
    if tag == model.__name__:
        return True
    return any(
        get_origin(f.annotation) is Literal and tag in get_args(f.annotation)
        for f in model.model_fields.values()
    )
