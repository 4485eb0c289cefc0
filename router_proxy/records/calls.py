"""A multi-call request's calls as its served record keeps them (``calls``): each model
called, in the order called, with its stage, what its text is (``role``), why the plan
went on past it, whether it answered, and its tokens and cost; with content kept, each
answer's text too, so a cascade's or aggregate's discarded answers join its request's
wide row like shadow answers do (training/records.py).

A verifier's text is a verdict on another call's answer: its call is listed (``role:
verdict``, its ``reason`` the verdict) but its text is never kept. The call that answered
live (a stream's last stage) holds no text of its own: the relayed answer is its text,
filled in by the writer thread once the record's ``answer`` is read (``fill_relayed``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from router_proxy.records.usage import usage_fields

if TYPE_CHECKING:
    from router_proxy.engine.multi_call.note import MultiCallNote

_RELAYED = "relayed"  # a marker, only until the writer thread fills in the answer


def call_entries(note: MultiCallNote, answers: bool) -> tuple[list[dict[str, Any]], int]:
    """The record's ``calls`` and the characters of answer text they hold; ``answers``:
    the record keeps content (else no text is listed)."""
    entries, chars = [], 0
    for call in note.calls:
        entry: dict[str, Any] = {
            "model": call.model,
            "stage": call.stage,
            "role": call.role,
            "reason": call.reason,
            "ok": call.called and call.error is None and (call.body is not None or call.streamed),
            "error": call.error.code if call.error is not None else None,
            "usage": usage_fields(call.usage),
            "cost_usd": call.cost,
            "latency_ms": round(call.seconds * 1000, 3),
        }
        if answers and not call.judges:
            if call.streamed:
                entry[_RELAYED] = True
            elif call.text is not None:
                entry["answer"] = call.text
                chars += len(call.text)
        entries.append(entry)
    return entries, chars


def fill_relayed(record: dict[str, Any]) -> None:
    """The live call's ``answer``: the record's (the text the client was sent)."""
    for entry in record.get("calls") or ():
        if isinstance(entry, dict) and entry.pop(_RELAYED, False):
            entry["answer"] = record.get("answer")
