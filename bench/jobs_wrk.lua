-- wrk's script for bench.jobs_bench: viewers watching running import jobs, as htmx polls the status fragment.
--
-- Not run by hand: bench.jobs_bench starts `wrk -s bench/jobs_wrk.lua` and passes, in the environment,
-- JOBS_BENCH_SESSIONS (session cookies, comma-separated), JOBS_BENCH_JOBS (job IDs) and JOBS_BENCH_PACE_MS.
-- Each wrk connection is one viewer: after each answer it waits a random 0.75 to 1.25 × the pace (2 s), so the
-- 200 connections do not fire in step, and asks again. Requests take the sessions and jobs in turn. An answer
-- that is not the running job's status fragment (a lost session answers 200 with HX-Redirect) is a failure.
-- With JOBS_BENCH_PATH set (e.g. /healthz) it asks for that path instead, without a cookie, and checks the status.
-- done() prints one JSON line: wrk's own counts, its latency percentiles (µs → ms) and the failures.

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

local function split(text)
  local items = {}
  for item in string.gmatch(text or "", "[^,]+") do
    table.insert(items, item)
  end
  return items
end

local sessions, jobs, path, pace, turn, failures

function init(args)
  sessions = split(os.getenv("JOBS_BENCH_SESSIONS"))
  jobs = split(os.getenv("JOBS_BENCH_JOBS"))
  path = os.getenv("JOBS_BENCH_PATH")
  pace = tonumber(os.getenv("JOBS_BENCH_PACE_MS") or "2000")
  turn = 0
  failures = 0
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
end

function delay()
  return math.floor(pace * (0.75 + 0.5 * math.random()))
end

function request()
  turn = turn + 1
  if path and path ~= "" then
    return wrk.format("GET", path)
  end
  local headers = {
    ["HX-Request"] = "true",
    ["Cookie"] = "sessionid=" .. sessions[(turn % #sessions) + 1],
  }
  return wrk.format("GET", "/jobs/" .. jobs[(turn % #jobs) + 1] .. "/status/", headers)
end

function response(status, headers, body)
  if status ~= 200 then
    failures = failures + 1
  elseif not (path and path ~= "") and not string.find(body, 'id="job-status"', 1, true) then
    failures = failures + 1
  end
  wrk.thread:set("failures", failures)
end

function done(summary, latency, requests)
  local failed = 0
  for _, thread in ipairs(threads) do
    failed = failed + (thread:get("failures") or 0)
  end
  local errors = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_s": %.3f, "failures": %d, "connect": %d, "read": %d, "write": %d, ' ..
    '"status": %d, "timeout": %d, "p50_ms": %.2f, "p95_ms": %.2f, "p99_ms": %.2f, "max_ms": %.2f}\n',
    summary.requests, summary.duration / 1e6, failed, errors.connect, errors.read, errors.write,
    errors.status, errors.timeout, latency:percentile(50) / 1000, latency:percentile(95) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000))
end
