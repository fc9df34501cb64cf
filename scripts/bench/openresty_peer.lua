-- The OpenResty-style peer of scripts/bench.sh: what a site without this
-- module would write with lua-nginx-module and lua-resty-redis (Debian:
-- libnginx-mod-http-lua, lua-nginx-redis).  In access_by_lua it runs a
-- sliding-log script equivalent to the module's (the module's own sliding-log
-- script as it was before the algorithms shared one script: TIME,
-- ZREMRANGEBYSCORE, ZCARD, ZADD NX, PEXPIRE, ZRANGE of the oldest entry) with
-- EVALSHA on a connection from the cosocket keepalive pool, and answers 429
-- with Retry-After when the limit is reached; when Redis cannot answer it
-- lets the request through (fail open), as the module does by default.

local ok, redis = pcall(require, "resty.redis")
if not ok then
    -- Debian ships lua-resty-redis as nginx.redis
    redis = require "nginx.redis"
end

local _M = {}

local set_timeouts = rawget(redis, "set_timeouts")

local script = [[
local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local stamp = t[1] .. '.' .. string.format('%06d', tonumber(t[2]))
local n = #KEYS
local counts = {}
local allowed = 1

local function us(score)
  return math.floor(tonumber(score) * 1000000 + 0.5)
end

local function seconds(v)
  return string.format('%d.%06d', math.floor(v / 1000000), v % 1000000)
end

for i = 1, n do
  local limit = tonumber(ARGV[2 * i - 1])
  local window_us = tonumber(ARGV[2 * i]) * 1000
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', seconds(now_us - window_us))
  counts[i] = redis.call('ZCARD', KEYS[i])
  if counts[i] >= limit then
    allowed = 0
  end
end

local out = { allowed, n }

for i = 1, n do
  local key = KEYS[i]
  local limit = tonumber(ARGV[2 * i - 1])
  local window_ms = tonumber(ARGV[2 * i])
  local window_us = window_ms * 1000
  local count = counts[i]
  local retry_us = 0

  if allowed == 1 then
    local member = stamp
    local seq = 0
    while redis.call('ZADD', key, 'NX', stamp, member) == 0 do
      seq = seq + 1
      member = stamp .. '-' .. seq
    end
    redis.call('PEXPIRE', key, window_ms)
    count = count + 1
  elseif count >= limit then
    local e = redis.call('ZRANGE', key, count - limit, count - limit,
                         'WITHSCORES')
    retry_us = us(e[2]) + window_us - now_us
  end

  local reset_us = 0
  if count > 0 then
    local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    reset_us = us(oldest[2]) + window_us - now_us
  end

  local remaining = limit - count
  if remaining < 0 then
    remaining = 0
  end

  out[#out + 1] = count
  out[#out + 1] = remaining
  out[#out + 1] = math.ceil(reset_us / 1000)
  out[#out + 1] = math.ceil(retry_us / 1000)
end

return out
]]

local sha

local function hex(s)
    return (s:gsub(".", function(c)
        return string.format("%02x", c:byte())
    end))
end

-- access_by_lua: check KEY against REQUESTS per WINDOW_MS in Redis at
-- HOST:PORT; POOL idle connections are kept (as many as the requests that
-- can be in flight at once, so that none is closed only to be opened again)
function _M.access(host, port, key, requests, window_ms, pool)
    if sha == nil then
        sha = hex(ngx.sha1_bin(script))
    end

    local red = redis:new()

    -- the module's defaults: 100 ms to connect, 50 ms per command.  Not
    -- red.set_timeouts: lua-resty-redis turns any unknown method into a
    -- Redis command, and 0.27 (Debian 12) has no set_timeouts
    if set_timeouts then
        red:set_timeouts(100, 50, 50)
    else
        red:set_timeout(100)
    end

    local ok, err = red:connect(host, port)
    if not ok then
        ngx.log(ngx.WARN, "rate limit peer: Redis down: ", err)
        return
    end

    if not set_timeouts then
        red:set_timeout(50)
    end

    local res
    res, err = red:evalsha(sha, 1, key, requests, window_ms)

    if not res and err and err:find("NOSCRIPT", 1, true) then
        res, err = red:eval(script, 1, key, requests, window_ms)
    end

    if not res then
        ngx.log(ngx.WARN, "rate limit peer: Redis error: ", err)
        red:close()
        return
    end

    red:set_keepalive(60000, pool)

    if res[1] == 0 then
        local retry = math.ceil((tonumber(res[6]) or 0) / 1000)
        if retry < 1 then
            retry = 1
        end

        ngx.header["Retry-After"] = retry
        return ngx.exit(429)
    end
end

return _M
