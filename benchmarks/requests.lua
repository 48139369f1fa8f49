-- wrk script: POST the pre-built callbacks of a pool file, each at most once.
--
-- Usage: wrk ... -s requests.lua <url> -- <pool file> <threads> [offset]
-- The pool file holds one request per line, "path<TAB>body" (callbacks.py).
-- Thread k sends lines offset+k, offset+k+threads, ... so no two threads
-- share a line; a thread that runs past the end starts over and counts the
-- repeats, which done() reports. done() prints one JSON line starting with
-- "RESULT " that run.py reads, with the latency percentiles in microseconds.

local threads = {}
local counter = 0

function setup(thread)
   thread:set("id", counter)
   counter = counter + 1
   table.insert(threads, thread)
end

function init(args)
   local pool, nthreads, offset = args[1], tonumber(args[2]), tonumber(args[3] or "0")
   paths, bodies = {}, {}
   for line in io.lines(pool) do
      local tab = line:find("\t", 1, true)
      paths[#paths + 1] = line:sub(1, tab - 1)
      bodies[#bodies + 1] = line:sub(tab + 1)
   end
   step = nthreads
   index = offset + id   -- 0-based position in the pool
   sent, repeats, bad_status, empty = 0, 0, 0, 0
   headers = { ["Content-Type"] = "text/xml" }
end

function request()
   if index >= #paths then
      repeats = repeats + 1
   end
   local i = index % #paths + 1
   index = index + step
   sent = sent + 1
   return wrk.format("POST", paths[i], headers, bodies[i])
end

function response(status, _, body)
   if status ~= 200 then
      bad_status = bad_status + 1
   elseif body == nil or #body == 0 then
      empty = empty + 1
   end
end

function done(summary, latency, _)
   local totals = { sent = 0, repeats = 0, bad_status = 0, empty = 0 }
   for _, t in ipairs(threads) do
      for key, _ in pairs(totals) do
         totals[key] = totals[key] + (t:get(key) or 0)
      end
   end
   local e = summary.errors
   io.write(string.format(
      'RESULT {"requests": %d, "duration_us": %d, "sent": %d, "repeats": %d, "bad_status": %d, "empty": %d, ' ..
      '"connect_errors": %d, "read_errors": %d, "write_errors": %d, "timeouts": %d, ' ..
      '"p50_us": %d, "p99_us": %d, "max_us": %d}\n',
      summary.requests, summary.duration, totals.sent, totals.repeats, totals.bad_status, totals.empty,
      e.connect, e.read, e.write, e.timeout,
      latency:percentile(50), latency:percentile(99), latency.max))
end
