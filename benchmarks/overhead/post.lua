-- wrk script for the overhead benchmark: every request is the same small chat completion.
-- Setting wrk.method/body/headers (and defining no request/response callbacks) keeps wrk on
-- its fast path: the request is built once and wrk does no Lua work per request.
wrk.method = "POST"
wrk.path = "/v1/chat/completions"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"model":"auto","messages":[{"role":"user","content":"Write a python function that reverses a list"}]}'
