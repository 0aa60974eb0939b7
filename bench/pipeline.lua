-- GET <url path> with args[1] requests (default 16) written in one go per connection.
-- wrk counts the requests in the string, waits for that many responses before writing again, and
-- counts every response in its request total and Requests/sec.
-- Usage: wrk -s bench/pipeline.lua http://host:port/ -- 16
local pipelined

init = function(args)
  local depth = tonumber(args[1]) or 16
  local requests = {}
  for i = 1, depth do
    requests[i] = wrk.format(nil, wrk.path)
  end
  pipelined = table.concat(requests)
end

request = function()
  return pipelined
end

-- wrk 4.1 bug (github.com/wg/wrk/issues/236): wrk records one latency per pipelined batch but
-- sizes its coordinated-omission correction by the per-request rate, so the correction adds
-- samples below the smallest measured latency. percentile() counts those samples but never scans
-- them, which prints 0.00us or a too-high value for the 99th percentile. All lost samples lie below
-- everything scanned, so the true 99th percentile is the one a point below the highest percentile
-- percentile() can still reach; bench/wrk.ts prefers this line over wrk's own 99% line.
done = function(_, latency, _)
  local reachable, unreachable = 0, 100
  for _ = 1, 40 do
    local mid = (reachable + unreachable) / 2
    if latency:percentile(mid) > 0 then
      reachable = mid
    else
      unreachable = mid
    end
  end
  io.write(string.format("corrected 99%% latency: %dus\n", latency:percentile(math.max(reachable - 1, 0))))
end
