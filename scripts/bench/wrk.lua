-- wrk script of scripts/bench.sh: prints one machine-readable line at the
-- end (latencies in microseconds), and with BENCH_STOP_AFTER=N stops after
-- N responses (wrk has no request count of its own; -t1 assumed): give a
-- -d long enough.
--
--   WRK requests=N duration_us=D status=S connect=C read=R write=W
--       timeout=T p50=US p90=US p99=US max=US

local stop_after = tonumber(os.getenv("BENCH_STOP_AFTER") or "0") or 0

if stop_after > 0 then
    local seen = 0

    -- defined only when needed: wrk parses every response for response()
    function response(status, headers, body)
        seen = seen + 1
        if seen == stop_after then
            -- the thread stops; wrk itself would sleep out -d, so it is
            -- told to finish now as on Ctrl-C.  sh's parent is wrk, and
            -- the kill waits until system() has returned: system() ignores
            -- SIGINT in the caller while sh runs
            wrk.thread:stop()
            os.execute("(sleep 0.2; kill -INT $PPID) >/dev/null 2>&1 &")
        end
    end
end

function done(summary, latency, requests)
    local e = summary.errors
    io.write(string.format(
        "WRK requests=%d duration_us=%d status=%d connect=%d read=%d "
        .. "write=%d timeout=%d p50=%d p90=%d p99=%d max=%d\n",
        summary.requests, summary.duration, e.status, e.connect, e.read,
        e.write, e.timeout, latency:percentile(50), latency:percentile(90),
        latency:percentile(99), latency.max))
end
