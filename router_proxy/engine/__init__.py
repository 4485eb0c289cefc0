"""The engine: one path for every API surface, with no HTTP in it.

A surface (server/surfaces) turns its request into a canonical one (``RequestContext``)
and hands it here: admission (client key, client limits) -> routing (the pipeline) ->
dispatch (retries, fallback, breakers; resilience/) -> the provider -> accounting (usage,
cost, metrics, the log line). What happened is kept in a ``RequestRecord``.
"""
