"""Plugins by their YAML key. Adding one is a file plus a line here."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, create_model, model_validator

from router_proxy.config.base import StrictModel
from router_proxy.plugins.base import Plugin
from router_proxy.plugins.params import ParamsPlugin
from router_proxy.plugins.redact_pii import RedactPiiPlugin
from router_proxy.plugins.system_prompt import SystemPromptPlugin
from router_proxy.registry import Registry

if TYPE_CHECKING:
    from router_proxy.resources import BuildContext

PLUGINS: Registry[type[Plugin]] = Registry(
    "plugin",
    [
        ("system_prompt", SystemPromptPlugin),
        ("params", ParamsPlugin),
        ("redact_pii", RedactPiiPlugin),
    ],
)


def _exactly_one(item: BaseModel) -> BaseModel:
    chosen = [name for name in PLUGINS if getattr(item, name) is not None]
    if len(chosen) != 1:
        raise ValueError(f"a plugin item takes exactly one of: {', '.join(PLUGINS)}")
    return item


def plugin_item_model() -> type[StrictModel]:
    """The YAML shape of one plugin: a mapping with exactly one known key."""
    fields: dict[str, Any] = {
        name: (cls.config_model | None, None) for name, cls in PLUGINS.items()
    }
    return create_model(
        "PluginItem",
        __base__=StrictModel,
        # pydantic's own stubs type this mapping narrower than what it accepts.
        __validators__={"exactly_one": model_validator(mode="after")(_exactly_one)},  # type: ignore[dict-item]
        **fields,
    )


def build_plugin(item: BaseModel, ctx: BuildContext) -> Plugin:
    name = next(name for name in PLUGINS if getattr(item, name) is not None)
    return PLUGINS[name].build(getattr(item, name), ctx)
