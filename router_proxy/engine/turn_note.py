"""What one turn of a conversation did about its session and its model, for the
response headers and the log line (``RequestRecord.turn``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SESSION_HEADER = "x-router-session"
AFFINITY_HEADER = "x-router-affinity"


@dataclass(slots=True)
class Switch:
    """The answering model is not the one that wrote the conversation's history."""

    previous: str  # the model bound to the session: it wrote the history
    reason: str  # why it did not answer: decision_changed, breaker_open, context, ...
    changed: list[str] = field(default_factory=list)  # what was made valid for the new one


@dataclass(slots=True)
class TurnNote:
    session: str  # the conversation's id (the client's header, or p-<prefix hash>)
    kept: str | None = None  # the bound model, put first: the turn's first choice
    affinity: str | None = None  # hit | miss | rebound, once a model has answered
    reason: str | None = None  # why a binding was not kept (rebound)
    switch: Switch | None = None

    def headers(self) -> dict[str, str]:
        headers = {SESSION_HEADER: self.session}
        if self.affinity is not None:
            headers[AFFINITY_HEADER] = self.affinity
        return headers

    def log_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {"session": self.session, "affinity": self.affinity}
        if self.reason is not None:
            fields["rebound"] = self.reason
        if self.switch is not None:
            switch = self.switch
            fields["switch"] = {
                "from": switch.previous,
                "reason": switch.reason,
                "changed": switch.changed or None,
            }
        return fields
