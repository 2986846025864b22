-- wrk script for bench/gateway.py: GET /v1/members/{id} or POST /v1/orders (unique order ids).
-- args: <get|orders> <prefix> <members> <bearer token or "-">
local threads = {}
local counter = 0

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  -- checkout orders happen now (the order's time decides which campaigns apply)
  occurred = os.date("!%Y-%m-%dT%H:%M:%SZ")
  mode = args[1]
  prefix = args[2] .. "-" .. tid .. "-"
  members = tonumber(args[3])
  headers = {["Content-Type"] = "application/json"}
  if args[4] ~= "-" then
    headers["Authorization"] = "Bearer " .. args[4]
  else -- straight to points: it answers only calls carrying the gateway's token
    headers["X-Gateway-Token"] = os.getenv("X_GATEWAY_TOKEN")
  end
end

-- ORDERS_PAUSE_MS (environment), if set: a random pause (exponential, this mean) before each
-- request, as in orders.lua (bench/replicas.py's paced rows)
local pause = tonumber(os.getenv("ORDERS_PAUSE_MS") or "0")
if pause > 0 then
  function delay()
    return -math.log(1 - math.random()) * pause
  end
end

function request()
  counter = counter + 1
  local member = "bench-m-" .. (counter % members)
  if mode == "get" then
    return wrk.format("GET", "/v1/members/" .. member, headers)
  end
  local body = string.format(
    '{"order_id":"%s%d","member_id":"%s","amount":"128.50","occurred_at":"%s"}',
    prefix, counter, member, occurred)
  return wrk.format("POST", "/v1/orders", headers, body)
end
