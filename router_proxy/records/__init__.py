"""Decision records: one structured record per sampled request (and per shadow call),
written off the event loop to a JSONL file or PostgreSQL; ``router-proxy replay``
re-routes them under another policy."""
