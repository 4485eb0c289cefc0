"""The cache's parts without HTTP: keys, the memory store's bounds, entries, config."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from router_proxy.cache.config import DecisionCacheConfig
from router_proxy.cache.entry import CachedAnswer, CorruptEntryError
from router_proxy.cache.guard import same_question
from router_proxy.cache.key import answer_key, context_key, tenant_of
from router_proxy.cache.policy import DecisionPolicy, directives_of
from router_proxy.cache.semantic import SMALL_CONTEXT, ContextIndex, SemanticIndex
from router_proxy.cache.store import MemoryStore, Slot
from router_proxy.config.errors import ConfigError
from router_proxy.config.load import load_config_text
from router_proxy.protocol import Usage

BODY = {
    "model": "auto",
    "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}],
    "temperature": 0,
    "user": "end-user-42",
}


def key(body: dict[str, object], tenant: str = "t", stream: bool = False) -> str:
    return answer_key(tenant, "chat/", stream, "policy", body)


def test_key_ignores_field_order_model_and_user_only() -> None:
    reordered = {"temperature": 0, "messages": BODY["messages"], "model": "faq"}
    assert key(BODY) == key(reordered)
    assert key(BODY) != key(BODY | {"temperature": 0.5})
    assert key(BODY) != key(BODY | {"tool_choice": "auto"})
    assert key(BODY) != key(BODY | {"response_format": {"type": "json_object"}})
    assert key(BODY) != key(BODY | {"stream_options": {"include_usage": True}})
    assert key(BODY) != key(BODY, stream=True)
    assert key(BODY) != key(BODY, tenant="other")
    nested = {"tools": [{"function": {"name": "f", "parameters": {"b": 1, "a": 2}}}]}
    swapped = {"tools": [{"function": {"parameters": {"a": 2, "b": 1}, "name": "f"}}]}
    assert key(nested) == key(swapped)


def test_context_key_leaves_out_only_the_last_user_turn() -> None:
    def ctx(last: str, system: str = "Be brief.") -> str | None:
        body = {
            "messages": [
                {"role": "system", "content": system},
                {"role": "user", "content": "first question"},
                {"role": "assistant", "content": "first answer"},
                {"role": "user", "content": last},
            ]
        }
        return context_key("t", "chat/", False, "p", body)

    assert ctx("how do I reset it") == ctx("how can I reset it")
    assert ctx("how do I reset it") != ctx("how do I reset it", system="Be verbose.")
    assert context_key("t", "responses/", False, "p", {"input": "a"}) == context_key(
        "t", "responses/", False, "p", {"input": "b"}
    )
    assert context_key("t", "embeddings/", False, "p", {"input": [1, 2]}) is None


def test_tenant_scope() -> None:
    by_header = DecisionCacheConfig(mode="exact", scope="header:x-tenant")
    assert tenant_of(DecisionCacheConfig(mode="exact"), "c1", {}) == "c1"
    assert tenant_of(by_header, "c1", {"x-tenant": "acme"}) == "c1/acme"
    assert tenant_of(by_header, "c1", {}) is None


def test_policy_refuses_sampled_and_several_choices_unless_allowed() -> None:
    strict = DecisionPolicy(DecisionCacheConfig(mode="exact"), "p")
    assert strict.refuses({}) is None
    assert strict.refuses({"temperature": 0.0}) is None
    assert strict.refuses({"temperature": 0.2}) == "temperature"
    assert strict.refuses({"n": 3}) == "n"
    loose = DecisionPolicy(
        DecisionCacheConfig(mode="exact", temperature="any", multiple_choices=True), "p"
    )
    assert loose.refuses({"temperature": 1.2, "n": 3}) is None


@pytest.mark.parametrize(
    ("headers", "lookup", "store"),
    [
        ({}, True, True),
        ({"cache-control": "no-cache"}, False, True),
        ({"cache-control": "No-Store"}, True, False),
        ({"cache-control": "no-cache, no-store"}, False, False),
        ({"x-router-cache": "off"}, False, False),
        ({"cache-control": "max-age=0"}, True, True),
    ],
)
def test_directives(headers: dict[str, str], lookup: bool, store: bool) -> None:
    asked = directives_of(headers)
    assert (asked.lookup, asked.store) == (lookup, store)


def test_memory_store_is_bounded_in_bytes_least_recently_used_first() -> None:
    sizes: list[int] = []
    now = [0.0]
    store = MemoryStore(3000, sizes.append, clock=lambda: now[0])
    slots = [Slot("c", "d", str(i)) for i in range(4)]

    async def run() -> None:
        for slot in slots[:3]:
            await store.put(slot, b"x" * 700, ttl=10)
        assert await store.get(slots[0]) is not None  # now the most recent
        await store.put(slots[3], b"x" * 700, ttl=10)  # over 3000: the oldest goes
        assert await store.get(slots[1]) is None
        assert await store.get(slots[0]) is not None
        assert store.bytes <= 3000
        assert sizes[-1] == store.bytes
        now[0] = 11.0
        assert await store.get(slots[0]) is None  # expired
        await store.put(Slot("c", "d", "huge"), b"x" * 5000, ttl=10)  # never fits
        assert await store.get(Slot("c", "d", "huge")) is None

    asyncio.run(run())


def test_memory_store_purges_by_client_and_decision() -> None:
    store = MemoryStore(1 << 20)

    async def run() -> None:
        for client in ("a", "b"):
            for decision in ("faq", "support"):
                await store.put(Slot(client, decision, "k"), b"v", ttl=10)
        assert await store.purge("a", "faq") == 1
        assert await store.purge(None, "support") == 2
        assert await store.purge("b", None) == 1
        assert len(store) == 0
        assert store.bytes == 0

    asyncio.run(run())


def test_entry_round_trip_and_corruption() -> None:
    answer = CachedAnswer(
        "stream", b'data: {"a":1}\n\ndata: [DONE]\n\n', "m", Usage(prompt_tokens=3), False, "stop"
    )
    assert CachedAnswer.decode(answer.encode()) == answer
    with pytest.raises(CorruptEntryError):
        CachedAnswer.decode(b"garbage")
    with pytest.raises(CorruptEntryError):
        CachedAnswer.decode(b'{"v": 99}\nbody')


POLICY = """\
providers: {mock: {type: mock}}
models: {m: {provider: mock}}
decisions:
  - {name: d, when: true, route: {candidates: [m]}, cache: %s}
"""


def test_config_errors_name_the_yaml_path() -> None:
    config, _ = load_config_text(POLICY % "{mode: exact, ttl: 60}")
    assert config.decisions[0].cache.mode == "exact"
    assert load_config_text(POLICY % "{}")[0].decisions[0].cache.mode == "off"
    for bad, where in [
        ("{mode: exakt}", "decisions[0].cache.mode"),
        ("{ttl: 0}", "decisions[0].cache.ttl"),
        ("{scope: tenant}", "decisions[0].cache.scope"),
        ("{mode: exact, typo: 1}", "decisions[0].cache.typo"),
    ]:
        with pytest.raises(ConfigError) as caught:
            load_config_text(POLICY % bad)
        assert where in str(caught.value)


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("How do I reset my password?", "What's the way to reset my password?", True),
        ("How do I reset my password?", "how can i reset my passwords", True),
        ("Why does my code compile?", "Why doesn't my code compile?", False),
        ("Can I bring two bags?", "Can I bring 3 bags?", False),
        ("Can I bring two bags?", "Can I bring 2 bags?", True),
        ("Convert 5 km to miles", "Convert 5 miles to km", False),
        ("What is the capital of France?", "What is the capital of Germany?", False),
        ("Give me a recipe with gluten.", "Give me a recipe without gluten.", False),
    ],
)
def test_the_guard_tells_the_same_question(a: str, b: str, same: bool) -> None:
    assert same_question(a, b) is same


def unit_vectors(n: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, 32)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_a_context_moves_to_hnsw_past_the_small_size_and_keeps_finding() -> None:
    vectors = unit_vectors(SMALL_CONTEXT + 50)
    context = ContextIndex(32, capacity=10_000)
    for i, v in enumerate(vectors[:SMALL_CONTEXT]):
        context.add(f"d{i}", v)
    assert context.hnsw is None
    assert context.search(vectors[7], 1)[0].digest == "d7"
    for i, v in enumerate(vectors[SMALL_CONTEXT:], SMALL_CONTEXT):
        context.add(f"d{i}", v)
    assert context.hnsw is not None
    for i in (3, SMALL_CONTEXT + 10):
        best = context.search(vectors[i], 1)[0]
        assert best.digest == f"d{i}"
        assert best.cosine == pytest.approx(1.0, abs=1e-2)
    context.remove("d3")
    assert all(c.digest != "d3" for c in context.search(vectors[3], 4))
    assert len(context) == SMALL_CONTEXT + 49


def test_contexts_are_bounded_in_entries_and_count() -> None:
    vectors = unit_vectors(10)
    index = SemanticIndex(32, capacity=3, max_contexts=2)
    for i, v in enumerate(vectors[:5]):
        index.add("c1", f"d{i}", v)
    assert len(index) == 3  # the two oldest went
    assert [c.digest for c in index.search("c1", vectors[0], 4)] != ["d0"]
    index.add("c2", "x", vectors[5])  # 4 prompts in all: c1, least recently used, goes
    assert len(index) == 1
    assert index.search("c1", vectors[4]) == []
    index.add("c3", "y", vectors[6])
    index.add("c4", "z", vectors[7])  # 3 contexts: c2 goes
    assert index.search("c2", vectors[5]) == []
    assert index.search("c1", vectors[4]) == []
    index.forget("c3", "y")
    assert index.search("c3", vectors[6]) == []


def test_a_reload_keeps_the_store_and_a_policy_without_cache_builds_none() -> None:
    from router_proxy.runtime import Runtime

    cached, _ = load_config_text(POLICY % "{mode: exact}")
    first = Runtime.build(cached)
    assert first.engine.cache is not None
    again = Runtime.build(cached, previous=first)
    assert again.engine.cache is not None
    assert again.engine.cache.store is first.engine.cache.store
    bigger = cached.model_copy(
        update={"cache": cached.cache.model_copy(update={"max_bytes": 2048})}
    )
    assert Runtime.build(bigger, previous=again).engine.cache.store is not first.engine.cache.store  # type: ignore[union-attr]
    plain, _ = load_config_text(POLICY % "{}")
    assert Runtime.build(plain, previous=again).engine.cache is None
