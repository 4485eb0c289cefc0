"""A multi-turn trace to replay: conversations as a chat client has them, turn by turn.

Deterministic (``random.Random(seed)``): the same seed gives the same trace, so every run
and every policy sees the same conversations. Each conversation has a topic that the
example policies' signals can see (small talk, code, reasoning, a long document,
German, French, Chinese or Japanese, personal data, health, a tool-using agent), 3-15
user turns, and a chance of drifting to another topic part-way (a chat that turns to
code), as real conversations do. A long-document conversation pastes 2-14 thousand
tokens in its first turn and keeps it in its history, so it outgrows small windows.

    python -m benchmarks.conversations.trace --write trace.jsonl [--count 240] [--seed 16]
"""

from __future__ import annotations

import argparse
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TOPICS: dict[str, list[str]] = {
    "chat": [
        "hi! how is your day going?",
        "tell me a joke about a {animal}",
        "what could I cook tonight with {food}?",
        "recommend a film for a rainy evening",
        "thanks, that helps. anything else?",
        "what is a nice name for a {animal}?",
        "plan a weekend in {city} for two",
    ],
    "code": [
        "Why does my python function return None? ```def total(xs):\n    for x in xs:\n"
        "        s = s + x```",
        "write a sql query that lists the ten biggest customers by revenue",
        "my javascript fetch call fails with a CORS error, what do I change?",
        "explain this stack trace: Traceback (most recent call last): KeyError: '{food}'",
        "how do I reverse a linked list in place in rust?",
        "add a unit test for that function",
        "now make it handle an empty list",
    ],
    "reasoning": [
        "prove that the sum of two odd numbers is even",
        "derive the integral of x^2 * e^x step by step",
        "why is the sky blue and not violet?",
        "analyse the trade-offs between a queue and a log for event sourcing",
        "optimise this: a bakery sells {n} loaves a day at $3, costs rise 10%, what price?",
    ],
    "document": [
        "summarise the document above in five bullet points",
        "which section talks about the budget?",
        "list every person the document names",
        "what would you cut to halve its length?",
    ],
    "german": [
        "Wie spät ist es in {city}, wenn es in Berlin Mittag ist?",
        "Kannst du mir ein Rezept mit {food} empfehlen?",
        "Erkläre mir bitte den Unterschied zwischen Miete und Pacht.",
        "Danke! Und wie sage ich das höflich auf Englisch?",
    ],
    "french": [
        "Peux-tu m'expliquer comment fonctionne la photosynthèse ?",
        "Quels sont les meilleurs quartiers de {city} pour une famille ?",
        "Écris un court poème sur la mer, s'il te plaît.",
    ],
    "chinese": [
        "请帮我写一封给房东的邮件,说明暖气坏了。",
        "这个周末去{city}旅游,有什么推荐的景点?",
        "把上面的内容翻译成英文。",
    ],
    "japanese": [
        "東京で一番おいしいラーメン屋はどこですか?",
        "この文章をもっと丁寧な日本語にしてください。",
        "週末の予定を一緒に考えてください。",
    ],
    "personal": [
        "please update my address, my email is jane.doe{n}@example.com",
        "call me back on +1 415 555 01{n:02d} about the invoice",
        "my card 4111 1111 1111 1111 was charged twice, can you refund it?",
    ],
    "health": [
        "What is the right dose of ibuprofen for a child of {n} kg?",
        "My blood test shows high ALT, what does it mean?",
        "Side effects of metformin and how to manage them?",
    ],
    "agent": [
        "find the cheapest flight to {city} next Friday",
        "book the second one",
        "now add a hotel near the station for two nights",
        "send the itinerary to my team",
    ],
}
FILLERS = {
    "animal": ["cat", "heron", "octopus", "badger"],
    "food": ["leeks", "chickpeas", "salmon", "mushrooms"],
    "city": ["Lisbon", "Kyoto", "Montreal", "Vienna"],
}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": name,
            "description": f"{name.replace('_', ' ')} for the user",
            "parameters": {"type": "object", "properties": {"query": {"type": "string"}}},
        },
    }
    for name in ("search_flights", "book_flight", "search_hotels", "send_email")
]
SYSTEMS = [
    "You are a helpful assistant.",
    "You are a concise assistant for a travel company.",
    "Answer briefly and cite sources where you can.",
]
DRIFT = 0.35  # chance a conversation turns to another topic part-way
PARAGRAPH = (
    "The committee met on the third of the month to review the regional budget, the "
    "hiring plan and the schedule for the new depot. Maria Alvarez presented the figures "
    "for the first quarter, which showed spending eleven percent under plan, mostly "
    "because two contracts were signed late. Tom Okafor asked whether the savings would "
    "carry into the next quarter or merely shift the costs. "
)


@dataclass
class Conversation:
    id: str
    topic: str
    system: str
    turns: list[str]
    tools: bool = False
    drift: dict[str, Any] = field(default_factory=dict)  # {"turn": i, "to": topic}

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__


def _line(rng: random.Random, topic: str) -> str:
    template = rng.choice(TOPICS[topic])
    fills = {key: rng.choice(values) for key, values in FILLERS.items()}
    return template.format(n=rng.randint(2, 60), **fills)


def _document(rng: random.Random) -> str:
    """A long document to paste: about 2,000 to 14,000 tokens."""
    paragraphs = rng.randint(30, 200)  # ~70 tokens each
    return "Here is the report:\n\n" + "\n\n".join(
        f"Section {i + 1}. {PARAGRAPH}" for i in range(paragraphs)
    )


def conversation(rng: random.Random, number: int) -> Conversation:
    topic = rng.choice(list(TOPICS))
    count = rng.randint(3, 15)
    turns = [_line(rng, topic) for _ in range(count)]
    if topic == "document":
        turns[0] = _document(rng) + "\n\n" + turns[0]
    drift: dict[str, Any] = {}
    if rng.random() < DRIFT and count > 3:
        at = rng.randint(2, count - 1)
        to = rng.choice([t for t in TOPICS if t not in (topic, "document")])
        turns[at:] = [_line(rng, to) for _ in turns[at:]]
        drift = {"turn": at, "to": to}
    return Conversation(
        f"c{number:04d}", topic, rng.choice(SYSTEMS), turns, topic == "agent", drift
    )


def build(count: int = 240, seed: int = 16) -> list[Conversation]:
    rng = random.Random(seed)
    return [conversation(rng, i) for i in range(count)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", type=Path, required=True, help="a JSON-lines file")
    parser.add_argument("--count", type=int, default=240)
    parser.add_argument("--seed", type=int, default=16)
    args = parser.parse_args()
    with args.write.open("w") as out:
        for item in build(args.count, args.seed):
            out.write(json.dumps(item.to_dict(), ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
