-- POSTs chat completions whose prompts vary on every request, so embedding caches cannot
-- hide the cost of routing. Prompts cycle through topics; a counter makes each unique.
local prompts = {
  "Write a python function that reverses a list",
  "Why does my loop never end when I read the file?",
  "What is the right dose of ibuprofen for an adult?",
  "Can my landlord keep my deposit after I moved out?",
  "Prove that there are infinitely many primes",
  "Plan a weekend in Lisbon with kids",
  "Explain the difference between a stock and a bond",
  "hello! how are you today?",
  "Summarise the plot of Hamlet in three sentences",
  "Which is heavier, a kilo of feathers or a kilo of iron? Think step by step.",
}
local counter = 0
request = function()
  counter = counter + 1
  local prompt = prompts[(counter % #prompts) + 1] .. " (request " .. counter .. ")"
  local body = '{"model":"auto","messages":[{"role":"user","content":"' .. prompt .. '"}]}'
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
end
