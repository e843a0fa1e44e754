-- wrk script for bench/run.sh: go-micro's request (POST / with the mucp headers and a protobuf
-- EchoMsg body, as bench/loadgen.c sends it) on every keep-alive connection, and one line of
-- key=value pairs at the end in loadgen's format (latencies in µs).
--
--   wrk -t1 -c64 -d2s -s bench/wrk-echo.lua http://127.0.0.1:PORT/ -- PAYLOAD_BYTES

local req

-- EchoMsg{payload = n bytes}: tag 1 (length-delimited) 0x0a, varint length, bytes.
local function echo_msg(n)
  if n == 0 then
    return ""
  end
  local pre, v = { "\10" }, n
  repeat
    local b = v % 128
    v = (v - b) / 128
    if v > 0 then
      b = b + 128
    end
    pre[#pre + 1] = string.char(b)
  until v == 0
  return table.concat(pre) .. string.rep("x", n)
end

function init(args)
  local n = tonumber(args[1] or "64")
  local headers = {
    ["User-Agent"] = "Go-http-client/1.1",
    ["Accept"] = "application/protobuf",
    ["Content-Type"] = "application/protobuf",
    ["Micro-Endpoint"] = "Bench.Echo",
    ["Micro-Id"] = "1",
    ["Micro-Method"] = "Bench.Echo",
    ["Micro-Service"] = "bench",
    ["Timeout"] = "5000000000",
  }
  req = wrk.format("POST", "/", headers, echo_msg(n))
end

function request()
  return req
end

function done(summary, latency, requests)
  local s = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format("calls=%d window_s=%.3f rps=%.0f p50_us=%.1f p90_us=%.1f " ..
    "p99_us=%.1f p999_us=%.1f max_us=%.1f errors=%d bad=0\n",
    summary.requests, s, summary.requests / s, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9), latency.max,
    e.connect + e.read + e.write + e.timeout + e.status))
end
