-- wrk script for hit_latency.sh: the case is the environment's CASE.
--   plain     the same request, to a decision without a cache (the baseline)
--   hit       the same request, to an exact-cache decision: a hit after the first
--   miss      a new prompt every request, to an exact-cache decision: lookup, call, store
--   semantic  a new spelling of one question every request (the punctuation changes):
--             an exact miss, then a semantic hit
local case = os.getenv("CASE") or "plain"
local counter = 0
local model = ({plain = "plain", hit = "exact", miss = "exact", semantic = "semantic"})[case]
wrk.method = "POST"
wrk.path = "/v1/chat/completions"
wrk.headers["Content-Type"] = "application/json"

local function body(prompt)
  return '{"model":"' .. model .. '","messages":[{"role":"user","content":"' .. prompt .. '"}]}'
end

-- Every wrk thread of every run its own prompts (unseeded, all would repeat each other's).
init = function(args)
  math.randomseed(os.time() + tonumber(string.sub(tostring({}), 8), 16))
end

request = function()
  counter = counter + 1
  local prompt = "How do I reset my password on the mobile app?"
  if case == "miss" then
    prompt = prompt .. " (" .. counter .. " " .. math.random(1e9) .. ")"
  elseif case == "semantic" then
    prompt = prompt .. string.rep("!", counter % 500 + 1)
  end
  return wrk.format(nil, nil, nil, body(prompt))
end
