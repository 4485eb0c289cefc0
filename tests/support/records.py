"""Decision records (shared_formats.md) of synthetic traffic for the live-learning tests:
multiple-choice questions on two topics, answered by three models, where `strong` is
nearly always right, `mathy` on math only, and `guess` seldom (wrong answers at random)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import orjson

MODELS = ("strong", "mathy", "guess")
LETTERS = "ABCD"
TOPICS = {
    "math": ["sum of {n} and {m}", "product of {n} and {m}", "{n} squared minus {m}"],
    "history": ["the year treaty {n} was signed", "who ruled kingdom {n}", "war number {m}"],
}


def questions(count: int, seed: int = 0) -> list[tuple[str, str, str]]:
    """(topic, prompt, correct letter) for ``count`` questions."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        topic = "math" if i % 2 == 0 else "history"
        stem = rng.choice(TOPICS[topic]).format(n=rng.randint(2, 99), m=rng.randint(2, 99))
        options = " ".join(f"{k}) option {rng.randint(1, 999)}" for k in LETTERS)
        prompt = f"Question {i} ({topic}): what is {stem}? {options}"
        out.append((topic, prompt, rng.choice(LETTERS)))
    return out


def answer(model: str, topic: str, correct: str, rng: random.Random) -> str:
    odds = {"strong": 0.95, "mathy": 0.95 if topic == "math" else 0.3, "guess": 0.35}
    right = rng.random() < odds[model]
    letter = correct if right else rng.choice([c for c in LETTERS if c != correct])
    return f"The answer is {letter}"


COST = {"strong": 0.004, "mathy": 0.001, "guess": 0.0002}


def records(count: int, seed: int = 0) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(records, true-labelled wide rows) for ``count`` requests, every one shadowed."""
    rng = random.Random(seed + 1)
    out, labelled = [], []
    for i, (topic, prompt, correct) in enumerate(questions(count, seed)):
        rid = f"req-{seed}-{i}"
        served = MODELS[i % 3]
        answers = {m: answer(m, topic, correct, rng) for m in MODELS}
        out.append(
            {
                "v": 1,
                "kind": "served",
                "request_id": rid,
                "time": 1000.0 + i,
                "surface": "chat",
                "decision": "default",
                "signals": {},
                "candidates": list(MODELS),
                "model": served,
                "attempts": [[served, None]],
                "usage": {"prompt_tokens": 10, "completion_tokens": 5},
                "cost_usd": COST[served],
                "latency_ms": 5.0,
                "status": 200,
                "trace_id": None,
                "prompt": prompt,
                "answer": answers[served],
            }
        )
        for model in MODELS:
            if model != served:
                out.append(
                    {
                        "v": 1,
                        "kind": "shadow",
                        "request_id": rid,
                        "time": 1000.5 + i,
                        "decision": "default",
                        "model": model,
                        "answer": answers[model],
                        "usage": {"prompt_tokens": 10, "completion_tokens": 5},
                        "cost_usd": COST[model],
                        "latency_ms": 7.0,
                        "status": 200,
                        "error": None,
                    }
                )
        scores = {m: float(answers[m].endswith(correct)) for m in MODELS}
        labelled.append({"id": rid, "prompt": prompt, "scores": scores, "costs": COST})
    return out, labelled


def write_jsonl(path: Path, items: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(orjson.dumps(item) + b"\n" for item in items))
    return path
