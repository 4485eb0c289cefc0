"""The response cache: answers to repeated (``exact``) or paraphrased (``semantic``)
requests served without calling a model, per decision, per tenant.

config.py (the YAML), key.py (what an answer's key covers), policy.py (whether a request
may be cached), entry.py (an answer's bytes), store.py / redis_store.py (where answers
live), coalesce.py (identical requests in flight wait for the first one's answer),
response_cache.py (what the engine calls).
"""
