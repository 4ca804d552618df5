-- wrk script of bench/wrk.py: POST pre-signed webhook bodies, one per request.
--
--   wrk -t T -c C -d D --latency -s bench/wrk_post.lua URL -- PREFIX
--
-- Thread n (0-based, in the order wrk sets its threads up) reads its own slice, the file PREFIX.n
-- (one form-encoded body a line), and posts its lines in order, each once; a thread that runs out
-- starts its slice again (the bench counts those as re-posts). done() prints one line,
-- `WRK_RESULT {json}`, with wrk's summary, latency percentiles (µs) and, per thread, how many
-- times request() was called (`calls`).
--
-- wrk calls request() once on thread 0's state before any thread runs (to check the request it
-- builds; wrk.c script_verify_request); that body is never sent. The bench accounts for it.

local threads = {}
local count = 0

function setup(thread)
   thread:set("tid", count)
   count = count + 1
   table.insert(threads, thread)
end

function init(args)
   local path = args[#args] .. "." .. tid   -- args[0] is the URL, the last one PREFIX
   bodies = {}
   for line in io.lines(path) do
      bodies[#bodies + 1] = line
   end
   n = #bodies
   if n == 0 then
      error("no bodies in " .. path)
   end
   calls = 0
   headers = {["Content-Type"] = "application/x-www-form-urlencoded"}
end

function request()
   local body = bodies[calls % n + 1]
   calls = calls + 1
   return wrk.format("POST", nil, headers, body)
end

function done(summary, latency, requests)
   local per_thread = {}
   for i, thread in ipairs(threads) do
      per_thread[i] = tostring(thread:get("calls"))
   end
   local e = summary.errors
   io.write(string.format(
      'WRK_RESULT {"duration_us": %d, "requests": %d, "bytes": %d, "connect": %d, "read": %d, ' ..
      '"write": %d, "status": %d, "timeout": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, ' ..
      '"max_us": %d, "mean_us": %.1f, "calls": [%s]}\n',
      summary.duration, summary.requests, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean,
      table.concat(per_thread, ", ")))
end
