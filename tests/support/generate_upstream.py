"""A fake OpenAI upstream for ``router-proxy generate`` tests: deterministic models
behind a real local HTTP server (Starlette under uvicorn in a thread).

``writer`` (the generator) turns a generation prompt into an arithmetic word problem or a
four-option law question, with its answer. Every so often it repeats its previous
question (a near-duplicate), gives a wrong key (the agreement filter drops it) or writes
a "Warm-up" that every model gets right (unanimous). The pool:

=========  ===================================================================
mathy      arithmetic right, law wrong
lawyer     law right, arithmetic wrong
gen-a      right unless a hash of (model, question) says no (about 30%)
gen-b      the same, and its first try at some questions gets a 503 (retried)
=========  ===================================================================

Each model's wrong answers differ, so a question with only one right answer has no
majority. ``block_after(k)``: answer k more requests, then hold every later one
unanswered (a run killed then has exactly k calls finished). ``answered`` counts the
requests answered, by (model, user message).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import threading
from collections import Counter
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.support.serving import ServerThread

ITEMS = ["apples", "books", "coins", "stamps", "marbles", "tickets", "shells", "pencils"]
PEOPLE = ["Ana", "Ben", "Chen", "Dara", "Eli", "Fatima", "Gus", "Hana", "Ivan", "Kofi"]
MATH_FORMS = [
    "{p} has {a} {item} and is given {b} more. How many {item} does {p} have now?",
    "A shop sold {a} {item} in the morning and {b} in the afternoon. How many {item} "
    "did it sell that day?",
    "What is the sum of {a} and {b}? {p} needs it for a homework sheet about {item}.",
    "One crate holds {a} {item} and a second crate holds {b}. How many {item} are there "
    "in both crates together?",
    "{p} walked {a} metres to the station and then {b} metres to work. How far did "
    "{p} walk in total, in metres?",
]
LAW_TOPICS = ["contract", "tort", "property", "criminal", "evidence", "trust", "copyright"]
PARTIES = ["tenant", "supplier", "employee", "neighbour", "buyer", "landlord", "artist"]
CLAIMS = [
    "a broken promise to deliver",
    "damage caused by careless driving",
    "a fence built on their land for decades",
    "a payment made without anything in return",
    "reliance on a statement later withdrawn",
]
OPTIONS = "A) estoppel\nB) negligence\nC) consideration\nD) adverse possession"
LETTERS = "ABCD"
POOL = ("mathy", "lawyer", "gen-a", "gen-b")


def _digest(*parts: str) -> int:
    return int(hashlib.sha256("|".join(parts).encode()).hexdigest()[:8], 16)


def math_question(i: int) -> tuple[str, int]:
    a, b = 11 + (i * 37) % 80, 12 + (i * 53) % 77
    form = MATH_FORMS[i % len(MATH_FORMS)]
    text = form.format(a=a, b=b, p=PEOPLE[i % len(PEOPLE)], item=ITEMS[(i // 2) % len(ITEMS)])
    return text, a + b


def law_question(i: int) -> tuple[str, str]:
    case = 100 + 7 * i
    text = (
        f"In a {LAW_TOPICS[i % len(LAW_TOPICS)]} law dispute (case No. {case}), a "
        f"{PARTIES[(i // 2) % len(PARTIES)]} complains of {CLAIMS[(i // 3) % len(CLAIMS)]}. "
        f"Which doctrine decides the dispute?\n{OPTIONS}"
    )
    return text, LETTERS[case % 4]


def generated(task: str, i: int) -> tuple[str, str]:
    """The writer's question i of a task and its key (see the module doc)."""
    if i % 10 == 5:  # repeats the previous question
        i -= 1
    question, truth = (math_question if task == "arithmetic" else law_question)(i)
    if i % 9 == 8:
        question = "Warm-up: " + question
    key = str(truth)
    if i % 7 == 3:  # a wrong key
        key = (
            str(int(truth) + 5)
            if isinstance(truth, int)
            else LETTERS[(LETTERS.index(truth) + 1) % 4]
        )
    return question, key


def truth_of(question: str) -> tuple[str, str]:
    """('math' | 'law', the right answer) of a question the writer wrote."""
    if "\nA) " in question:
        case = int(re.search(r"case No\. (\d+)", question).group(1))  # type: ignore[union-attr]
        return "law", LETTERS[case % 4]
    a, b = (int(n) for n in re.findall(r"\d+", question))
    return "math", str(a + b)


def pool_answer(model: str, question: str) -> str:
    kind, truth = truth_of(question)
    right = question.startswith("Warm-up") or {
        "mathy": kind == "math",
        "lawyer": kind == "law",
    }.get(model, _digest(model, question) % 10 >= 3)
    if right:
        value = truth
    elif kind == "math":
        value = str(int(truth) + {"mathy": 2, "lawyer": 1, "gen-a": -1, "gen-b": 10}[model])
    else:
        shift = {"mathy": 1, "lawyer": 1, "gen-a": 2, "gen-b": 3}[model]
        value = LETTERS[(LETTERS.index(truth) + shift) % 4]
    return f"Let me work through it step by step.\nANSWER: {value}"


def writer_reply(prompt: str) -> str:
    number = int(re.search(r"Write request (\d+) of", prompt).group(1))  # type: ignore[union-attr]
    task = "arithmetic" if "arithmetic" in prompt else "law"
    question, key = generated(task, number - 1)
    return f"QUESTION:\n{question}\nANSWER: {key}"


class GenerateUpstream:
    def __init__(self) -> None:
        self.answered: Counter[tuple[str, str]] = Counter()
        self.pending = 0  # admitted requests not answered yet
        self.seen: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()
        self._admit: int | None = None  # requests still admitted (None: all)
        self._stopping = threading.Event()
        self._server = ServerThread(self._app(), lifespan="off", timeout_graceful_shutdown=1)

    def __enter__(self) -> GenerateUpstream:
        self._server.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stopping.set()
        self._server.stop()

    @property
    def base_url(self) -> str:
        return self._server.base_url

    def block_after(self, count: int | None) -> None:
        with self._lock:
            self._admit = count

    def clear(self) -> None:
        with self._lock:
            self.answered.clear()
            self.seen.clear()

    def answered_total(self) -> int:
        with self._lock:
            return sum(self.answered.values())

    def held(self) -> bool:
        """Every admitted request answered, and the rest held."""
        with self._lock:
            return self._admit == 0 and self.pending == 0

    def _app(self) -> Starlette:
        return Starlette(routes=[Route("/v1/chat/completions", self._chat, methods=["POST"])])

    def _admitted(self) -> bool:
        with self._lock:
            if self._admit is None:
                return True
            if self._admit > 0:
                self._admit -= 1
                self.pending += 1
                return True
            return False

    async def _chat(self, request: Request) -> Response:
        body: dict[str, Any] = await request.json()
        model, messages = body["model"], body["messages"]
        user = next(m["content"] for m in messages if m["role"] == "user")
        if not self._admitted():
            while not self._stopping.is_set():
                if await request.is_disconnected():
                    break
                await asyncio.sleep(0.02)
            return JSONResponse({"error": {"message": "held"}}, 503)
        try:
            return self._answer(model, user, messages)
        finally:
            with self._lock:
                self.pending = max(self.pending - 1, 0)

    def _answer(self, model: str, user: str, messages: list[dict[str, str]]) -> Response:
        with self._lock:
            self.seen[model, user] += 1
            first_try = self.seen[model, user] == 1
        if model == "gen-b" and first_try and _digest(user) % 4 == 0:
            return JSONResponse({"error": {"message": "busy", "type": "server_error"}}, 503)
        text = writer_reply(user) if model == "writer" else pool_answer(model, user)
        words = sum(len(m["content"].split()) for m in messages)
        usage = {"prompt_tokens": words, "completion_tokens": len(text.split())}
        with self._lock:
            self.answered[model, user] += 1
        message = {"role": "assistant", "content": text}
        return JSONResponse(
            {
                "id": "chatcmpl-gen",
                "object": "chat.completion",
                "created": 0,
                "model": model,
                "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                "usage": usage | {"total_tokens": sum(usage.values())},
            }
        )
