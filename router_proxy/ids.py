"""Unique ids made cheaply: 32 hex digits like ``uuid4().hex``, from 64 random bits drawn
once per process (so replicas and workers never collide) and a counter. A UUID per id
was a measurable share of a request's cost on the fast path (a getrandom call and the
UUID object), and a request makes several (its own, its answer's, its items')."""

from __future__ import annotations

import itertools
import os

_prefix = ""
_counter = itertools.count()


def _reseed() -> None:
    global _prefix, _counter
    _prefix = os.urandom(8).hex()
    _counter = itertools.count(int.from_bytes(os.urandom(4), "big"))


_reseed()
os.register_at_fork(after_in_child=_reseed)  # a forked worker must not repeat our ids


def unique_hex() -> str:
    return f"{_prefix}{next(_counter) & 0xFFFFFFFFFFFFFFFF:016x}"
