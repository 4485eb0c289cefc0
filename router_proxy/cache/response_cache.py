"""ResponseCache: the engine's one entry to the cache. Per request:

    begin (after routing) -> lookup -> a hit answers; else the upstream answers, and
    keep_whole / keep_stream (only a complete, successful answer) stores it; ``ended``
    when the request ends (its flight, if it led one, is over).

A miss on a decision that coalesces (the default) joins the key's flight (coalesce.py):
the first request leads and calls the upstream; identical ones arriving meanwhile wait
for its answer and are served it as ``coalesced`` (like a hit: no model paid).

Built per config only when some decision caches (``build`` returns None otherwise, and
the engine then does no cache work at all). The store is carried across reloads while it
fits the new config, so a reload does not empty the cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from router_proxy.cache.coalesce import Flight, Flights
from router_proxy.cache.config import CacheConfig
from router_proxy.cache.entry import CachedAnswer, CorruptEntryError
from router_proxy.cache.key import answer_key, context_key, tenant_of
from router_proxy.cache.matcher import SemanticMatcher
from router_proxy.cache.policy import DecisionPolicy, decision_policies, directives_of
from router_proxy.cache.redis_store import JOURNAL_PAGE, RedisStore
from router_proxy.cache.semantic import SemanticIndex, Vector, vector_to_bytes
from router_proxy.cache.store import CacheStore, CacheUnavailableError, MemoryStore, Slot
from router_proxy.config.schema import Config
from router_proxy.context import RequestContext
from router_proxy.embeddings.shared import SharedEncoder
from router_proxy.providers.base import ChatStream, Completion, StreamStats
from router_proxy.resilience.shared_state import SharedState

logger = logging.getLogger("router_proxy.cache")

# coalesced: served the answer of an identical request that was in flight (a hit's kin)
Outcome = Literal["hit", "coalesced", "miss", "bypass"]
CATCH_UP_PAGES = 10  # journal pages one lookup reads at most (the rest: the next lookups)


@dataclass(eq=False, slots=True)
class CacheUse:
    """What the cache does for one request (``RequestRecord.cache``)."""

    decision: str
    outcome: Outcome = "bypass"
    slot: Slot | None = None  # where the answer is kept; None: bypassed
    stream: bool = False  # the request streams: only a stored stream answers it
    lookup: bool = False  # may be answered from the cache (not `no-cache`)
    store: bool = False  # its complete answer may be kept (not `no-store`)
    hit: CachedAnswer | None = None
    # Semantic decisions: the request's context key (None: exact only), its last user
    # turn, and that turn's vector once embedded.
    context: str | None = None
    prompt: str = ""
    vector: Vector | None = None
    flight: Flight | None = None  # the flight this request leads, until settled

    @property
    def model(self) -> str | None:
        """The model whose stored answer served a hit."""
        return self.hit.model if self.hit is not None else None


@dataclass(eq=False, slots=True)
class StreamTee:
    """A stream's events as relayed, kept until it ends; dropped past ``limit`` bytes."""

    limit: int
    parts: list[bytes] = field(default_factory=list)
    size: int = 0
    full: bool = False

    def add(self, block: bytes) -> None:
        if self.full:
            return
        self.size += len(block)
        if self.size > self.limit:
            self.full, self.parts = True, []
        else:
            self.parts.append(block)


class ResponseCache:
    def __init__(
        self,
        policies: Mapping[str, DecisionPolicy],
        store: CacheStore,
        settings: CacheConfig,
        semantic: SemanticMatcher | None = None,
        flights: Flights | None = None,
    ) -> None:
        self.policies = policies
        self.store = store
        self.settings = settings
        self.semantic = semantic  # None: no decision caches semantically
        self.flights = flights if flights is not None else Flights()
        # Stores in flight (the loop keeps only weak references to tasks).
        self._pending: set[asyncio.Task[None]] = set()

    @classmethod
    def build(
        cls,
        config: Config,
        shared: SharedState,
        encoder: SharedEncoder,
        on_size: Callable[[int], None] | None = None,
        previous: ResponseCache | None = None,
    ) -> ResponseCache | None:
        """The cache for ``config``; None when no decision caches. Loads the encoder when a
        decision caches semantically (run it off the event loop, like all of a build)."""
        policies = decision_policies(config)
        if not policies:
            return None
        store = previous.store if previous is not None else None
        carried = store is not None and _fits(store, config.cache, shared)
        if store is None or not carried:
            store = _new_store(config.cache, shared, on_size)
        semantic = None
        if any(p.semantic for p in policies.values()):
            kept = previous.semantic if previous is not None and carried else None
            vectors = encoder.get()
            if kept is not None and kept.encoder is vectors:
                semantic = kept
            else:
                index = SemanticIndex(vectors.dim, config.cache.semantic_max_entries)
                semantic = SemanticMatcher(vectors, index)
        # Flights in progress carry over a reload (keys cover the decision's fingerprint).
        flights = previous.flights if previous is not None else None
        return cls(policies, store, config.cache, semantic, flights)

    def begin(self, ctx: RequestContext, decision: str, client: str) -> CacheUse | None:
        """What the cache will do for this request; None when its decision does not cache."""
        policy = self.policies.get(decision)
        if policy is None:
            return None
        use = CacheUse(decision, stream=ctx.request.stream)
        body = ctx.native_body if ctx.native_body is not None else ctx.raw_body
        asked = directives_of(ctx.headers)
        tenant = tenant_of(policy.config, client, ctx.headers)
        if tenant is None or policy.refuses(body) or not (asked.lookup or asked.store):
            return use  # bypass
        surface = f"{ctx.endpoint}/{ctx.native_format or ''}"
        digest = answer_key(tenant, surface, ctx.request.stream, policy.fingerprint, body)
        use.slot = Slot(client, decision, digest)
        use.lookup, use.store, use.outcome = asked.lookup, asked.store, "miss"
        if policy.semantic and self.semantic is not None and ctx.endpoint == "chat":
            use.prompt = ctx.text("last_user")
            if use.prompt.strip():
                use.context = context_key(
                    tenant, surface, ctx.request.stream, policy.fingerprint, body
                )
        return use

    async def lookup(self, use: CacheUse) -> CachedAnswer | None:
        """The stored answer, marking ``use`` a hit; a store that does not answer makes
        the request a bypass (served, not stored)."""
        if use.slot is None or not use.lookup:
            return None
        try:
            data = await self.store.get(use.slot)
        except CacheUnavailableError:
            use.outcome, use.slot = "bypass", None
            return None
        answer = _decoded(data, use.decision) if data is not None else None
        if answer is None and use.context is not None:
            try:
                answer = await self._similar(use)
            except CacheUnavailableError:
                use.outcome, use.slot = "bypass", None
                return None
        outcome: Outcome = "hit"
        if answer is None:
            wait = self.policies[use.decision].coalesce_wait
            if wait is None or (answer := await self._coalesced(use, wait)) is None:
                return None
            outcome = "coalesced"
        if answer.kind != ("stream" if use.stream else "whole"):
            return None  # (the key covers the kind: another one is a bug, never served)
        use.outcome, use.hit = outcome, answer
        return answer

    async def _coalesced(self, use: CacheUse, wait: float) -> CachedAnswer | None:
        """The answer of an identical request in flight, waited for; None when there is
        none (this one then leads, if it may store) or it brings none in time."""
        assert use.slot is not None
        if not use.store:  # it could not share its answer: it follows only
            flight = self.flights.joined(use.slot)
            return await self.flights.follow(flight) if flight is not None else None
        flight, leads = self.flights.join(use.slot, wait)
        if not leads:
            return await self.flights.follow(flight)
        use.flight = flight
        # However the request ends (an error, a client that left), its followers go on.
        task = asyncio.current_task()
        if task is not None:
            task.add_done_callback(lambda _: self.flights.settle(flight, None))
        return None

    async def _similar(self, use: CacheUse) -> CachedAnswer | None:
        """A stored answer to the same question asked another way, in the same context."""
        assert self.semantic is not None
        assert use.context is not None
        assert use.slot is not None
        slot = use.slot
        use.vector = await self.semantic.embed(use.prompt)

        async def fetch(digest: str) -> CachedAnswer | None:
            data = await self.store.get(Slot(slot.client, slot.decision, digest))
            return _decoded(data, slot.decision) if data is not None else None

        if self.store.shared:
            await self._catch_up(use.context, slot)
        threshold = self.policies[use.decision].config.threshold
        found = await self.semantic.find(use.context, use.prompt, use.vector, threshold, fetch)
        return found[1] if found is not None else None

    async def _catch_up(self, context: str, slot: Slot) -> None:
        """Learn the prompts other replicas stored in ``context`` since this one last looked
        (one round trip when nothing is new)."""
        assert self.semantic is not None
        index = self.semantic.index
        for _ in range(CATCH_UP_PAGES):
            journal = await self.store.shared_prompts(slot, context, index.cursor(context))
            index.learn(context, journal)
            if len(journal) < JOURNAL_PAGE:
                return

    def keep_whole(self, use: CacheUse, completion: Completion, model: str) -> None:
        """Store a whole answer the upstream gave (a success: errors never get here)."""
        if use.slot is None or not use.store:
            return
        answer = CachedAnswer(
            "whole", completion.body, model, completion.usage, completion.native, prompt=use.prompt
        )
        self._keep(use, answer)

    def tee(self, use: CacheUse | None) -> StreamTee | None:
        """Where a stream's events are kept while relayed, if it is to be stored."""
        if use is None or use.slot is None or not use.store or use.hit is not None:
            return None
        return StreamTee(self.settings.max_entry_bytes)

    def keep_stream(
        self, use: CacheUse, tee: StreamTee, stream: ChatStream, model: str | None
    ) -> None:
        """Store a stream that ended normally: every event relayed, a finish reason seen."""
        if tee.full or stream.stats.finish_reason is None or model is None:
            return
        body = b"".join(tee.parts)
        stats = stream.stats
        answer = CachedAnswer(
            "stream", body, model, stats.usage, stream.native, stats.finish_reason, use.prompt
        )
        self._keep(use, answer)

    def ended(self, use: CacheUse) -> None:
        """The request has ended: a flight it led and did not answer is over, and its
        followers call the upstream themselves."""
        if use.flight is not None:
            self.flights.settle(use.flight, None)
            use.flight = None

    async def purge(self, client: str | None, decision: str | None) -> int:
        """Drop stored answers; the semantic index forgets them as lookups find them gone
        (all at once when everything goes)."""
        purged = await self.store.purge(client, decision)
        if self.semantic is not None and client is None and decision is None:
            self.semantic.index.clear()
        return purged

    def _keep(self, use: CacheUse, answer: CachedAnswer) -> None:
        if use.flight is not None:  # its followers are served now, whatever the store does
            self.flights.settle(use.flight, answer)
            use.flight = None
        data = answer.encode()
        if use.slot is None or len(data) > self.settings.max_entry_bytes:
            return
        self._spawn(self._put(use, data))

    async def _put(self, use: CacheUse, data: bytes) -> None:
        assert use.slot is not None
        ttl = self.policies[use.decision].config.ttl
        try:
            await self.store.put(use.slot, data, ttl)
        except CacheUnavailableError:
            return  # the next lookups see the store down and bypass
        if self.semantic is None or use.context is None:
            return
        vector = use.vector if use.vector is not None else await self.semantic.embed(use.prompt)
        self.semantic.add(use.context, use.slot.digest, vector)
        if self.store.shared:
            keep = self.settings.semantic_max_entries
            with contextlib.suppress(CacheUnavailableError):
                await self.store.share_prompt(
                    use.slot, use.context, vector_to_bytes(vector), ttl, keep
                )

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)


def _decoded(data: bytes, decision: str) -> CachedAnswer | None:
    try:
        return CachedAnswer.decode(data)
    except CorruptEntryError:
        logger.warning("dropped an unreadable cache entry (%s)", decision)
        return None


def replayed_completion(answer: CachedAnswer) -> Completion:
    return Completion(answer.body, answer.usage, answer.native)


def replayed_stream(answer: CachedAnswer) -> tuple[ChatStream, bytes]:
    """A stored stream as an opened one: its events in one block (first), then nothing."""
    stats = StreamStats(usage=answer.usage, finish_reason=answer.finish_reason)
    return ChatStream(_nothing_more(), stats, native=answer.native), answer.body


async def _nothing_more() -> AsyncGenerator[bytes, None]:
    nothing: tuple[bytes, ...] = ()
    for block in nothing:
        yield block


def _new_store(
    settings: CacheConfig, shared: SharedState, on_size: Callable[[int], None] | None
) -> CacheStore:
    if shared.shared:
        return RedisStore(shared)
    return MemoryStore(settings.max_bytes, on_size)


def _fits(store: CacheStore, settings: CacheConfig, shared: SharedState) -> bool:
    """Whether a previous config's store serves this one as it is."""
    if isinstance(store, RedisStore):
        return store.state is shared
    return (
        not shared.shared
        and isinstance(store, MemoryStore)
        and store.max_bytes == settings.max_bytes
    )
