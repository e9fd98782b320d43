-- wrk script for benches/proxy/run.sh.
-- WRK_PATH: the request target: "/" (direct) or an absolute-form URL
--           "http://bench.test:PORT/" (sent through a proxy as it is).
-- WRK_HOST: the Host header. WRK_AUTH: the Authorization header value.
-- Prints one line "WRKJSON {...}" with the figures bench.py reads.
wrk.method = "GET"
wrk.path = os.getenv("WRK_PATH") or "/"
wrk.headers["Host"] = os.getenv("WRK_HOST")
local auth = os.getenv("WRK_AUTH")
if auth and auth ~= "" then
  wrk.headers["Authorization"] = auth
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors_connect":%d,"errors_read":%d,"errors_write":%d,"errors_status":%d,"errors_timeout":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"mean_us":%.1f,"max_us":%d}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.mean, latency.max))
end
