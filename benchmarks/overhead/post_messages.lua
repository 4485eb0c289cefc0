-- wrk script for `run.py --surface messages`: every request is the same Anthropic Messages
-- call. Only wrk.method/path/body/headers are set (no callbacks): wrk stays on its fast path.
wrk.method = "POST"
wrk.path = "/v1/messages"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["anthropic-version"] = "2023-06-01"
wrk.body = '{"model":"auto","max_tokens":256,"messages":[{"role":"user","content":"Write a python function that reverses a list"}]}'
