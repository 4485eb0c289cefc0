-- wrk script for `run.py --surface responses`: every request is the same OpenAI Responses
-- call. Only wrk.method/path/body/headers are set (no callbacks): wrk stays on its fast path.
wrk.method = "POST"
wrk.path = "/v1/responses"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"model":"auto","input":"Write a python function that reverses a list"}'
