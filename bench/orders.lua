-- wrk script: POST /v1/orders with a unique order id per request.
-- args: <prefix> <members> <hot|spread> [<member id prefix>, default bench-m-]
-- X_GATEWAY_TOKEN (environment), if set: sent as X-Gateway-Token (bench/harness.py sets it).
-- ORDERS_PAUSE_MS (environment), if set: each connection waits a random pause (exponential,
-- this mean) before each request: shoppers arriving at random at a chosen rate, not as fast
-- as the server answers. (An environment variable, since wrk decides whether the script
-- paces its requests before any thread sees the arguments: unset, nothing changes.)
local threads = {}
local counter = 0

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  -- checkout orders happen now (the order's time decides which campaigns apply)
  occurred = os.date("!%Y-%m-%dT%H:%M:%SZ")
  prefix = args[1] .. "-" .. tid .. "-"
  members = tonumber(args[2])
  hot = args[3] == "hot"
  who = args[4] or "bench-m-"
  math.randomseed(os.time() + 7919 * tid)
  headers = {["Content-Type"] = "application/json"}
  -- straight to a service: it answers only calls carrying the gateway's token
  local token = os.getenv("X_GATEWAY_TOKEN")
  if token then headers["X-Gateway-Token"] = token end
end

local pause = tonumber(os.getenv("ORDERS_PAUSE_MS") or "0")
if pause > 0 then
  function delay()
    return -math.log(1 - math.random()) * pause
  end
end

function request()
  counter = counter + 1
  local member
  if hot then member = who .. "0" else member = who .. (counter % members) end
  local body = string.format(
    '{"order_id":"%s%d","member_id":"%s","amount":"128.50","occurred_at":"%s"}',
    prefix, counter, member, occurred)
  return wrk.format("POST", "/v1/orders", headers, body)
end
