"""Helpers the tests (and benchmarks/faults) share: fake upstreams, servers in threads and
processes, a Redis server, and per-area helpers. No tests here."""
