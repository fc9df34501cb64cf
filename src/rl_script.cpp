/*
 * The sliding-log check of several limits as one atomic script.
 *
 * KEYS[i]       the sorted set of limit i (PREFIX:KEY:NAME)
 * ARGV[2i-1]    requests allowed per window
 * ARGV[2i]      window, milliseconds
 *
 * Time is the Redis server's (TIME), never a client's: every nginx host
 * shares one clock.  Members are "seconds.microseconds" with a "-N" suffix
 * when two requests land in the same microsecond; scores are the same
 * instant in seconds.  An entry at time s counts while now < s + window.
 *
 * All limits are decided before any is counted: the request is counted in
 * every limit or in none, so a rejected request consumes nothing.
 *
 * Returns { allowed, n, then per limit: count, remaining, reset_ms,
 * retry_ms }: count is the number of entries in the window after this
 * request, reset_ms the time until the oldest entry leaves the window, and
 * retry_ms, for a limit that rejects, the time until a request would pass.
 */

#include "rl_script.hpp"
#include "rl_limit.hpp"


namespace {

const char  script[] = R"lua(
local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local stamp = t[1] .. '.' .. string.format('%06d', tonumber(t[2]))
local n = #KEYS
local counts = {}
local allowed = 1

-- scores come back as Redis formats doubles; microseconds are exact
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
)lua";

} /* namespace */


namespace rl {

const std::string &
slidingLogScript()
{
    static const std::string  s(script, sizeof(script) - 1);

    return s;
}


const std::string &
slidingLogSha()
{
    static const std::string  sha = sha1Hex(script, sizeof(script) - 1);

    return sha;
}

} /* namespace rl */
