"""Base classes shared by every config model, including those defined beside their
implementation (a provider's or a signal's own file)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class StrictModel(BaseModel):
    # Config refuses unknown keys so a typo fails loudly instead of being ignored.
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProviderConfigBase(StrictModel):
    type: str
    max_connections: int = Field(default=100, ge=1)
    connect_timeout: float = Field(default=10.0, gt=0)


class SignalConfigBase(StrictModel):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.:-]+$")
    type: str
    description: str = ""

    def accepts_value(self, value: object) -> str | None:
        """For ``{signal: value}`` predicates: None if ``value`` is one this signal can
        take, else why not. Boolean signals (the default) accept only their name."""
        return f"signal '{self.name}' is boolean; write `{self.name}`, not {{{self.name}: ...}}"
