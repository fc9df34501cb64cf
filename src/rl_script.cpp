/*
 * One atomic script decides a request against all its limits.
 *
 * KEYS[i]       the key of limit i (PREFIX:KEY:NAME)
 * ARGV[4i-3]    its algorithm: l (sliding_log), s (sliding_window),
 *               g (gcra), f (fixed_window)
 * ARGV[4i-2]    requests allowed per window
 * ARGV[4i-1]    window, milliseconds
 * ARGV[4i]      burst (gcra)
 *
 * Time is the Redis server's (TIME), never a client's: every nginx host
 * shares one clock.  All limits are decided, reading only, before any is
 * counted: the request is counted in every limit or in none, so a rejected
 * request consumes nothing.  (Sliding-log trimming of entries already out of
 * the window is done while deciding; it changes no decision.)
 *
 * Returns { allowed, n, then per limit: count, remaining, reset_ms,
 * retry_ms }: count is the number of requests in the window (this one
 * included when it passed), remaining what is still allowed now, reset_ms
 * the time until the next unit of quota comes back, and retry_ms, for a
 * limit that rejects, the time until a request would pass.
 *
 * sliding_log: a sorted set, one member per request ("seconds.micro", with
 *   "-N" on collisions), scored by the same instant; it expires one window
 *   after its newest entry.  Exact.
 * fixed_window: a counter that expires at the end of the epoch-aligned
 *   window.  Up to twice the limit can pass around a window boundary.
 * sliding_window: a hash { w = window index, c = its count, p = the
 *   previous window's count }; the estimate weights p by the share of the
 *   sliding window still inside the previous fixed window.
 * gcra: "g" and the theoretical arrival time (microseconds) as a string;
 *   one request per window/requests, up to burst at once.
 * A key another algorithm left (the limit's algorithm was changed) is
 * replaced: the first command on it fails with WRONGTYPE, or for the two
 * string kinds the "g" tells them apart.  No TYPE is asked on the way.
 */

#include "rl_script.hpp"
#include "rl_limit.hpp"

#include <cinttypes>
#include <cstdio>


namespace {

const char  script[] = R"lua(
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])

local function us(score)
  return math.floor(tonumber(score) * 1000000 + 0.5)
end

local function seconds(v)
  return string.format('%d.%06d', math.floor(v / 1000000), v % 1000000)
end

-- the first command on a key: a key of another type (the limit's
-- algorithm changed) is deleted and the command run again
local function first(cmd, key, ...)
  local r = redis.pcall(cmd, key, ...)
  if type(r) == 'table' and r.err then
    redis.call('DEL', key)
    r = redis.call(cmd, key, ...)
  end
  return r
end

local decide, commit = {}, {}

decide.l = function(key, limit, w)
  first('ZREMRANGEBYSCORE', key, '-inf', seconds(now - w))
  local p = { count = redis.call('ZCARD', key), retry = 0, reset = 0 }
  if p.count > 0 then
    -- the oldest entry says when quota comes back; when it is also the
    -- entry a rejected request waits for, one ZRANGE serves both
    local o = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    p.reset = us(o[2]) + w - now
    if p.count == limit then
      p.retry = p.reset
    elseif p.count > limit then
      local e = redis.call('ZRANGE', key, p.count - limit, p.count - limit,
                           'WITHSCORES')
      p.retry = us(e[2]) + w - now
    end
  end
  p.remaining = limit - p.count
  return p
end

commit.l = function(key, limit, w, p)
  local stamp = t[1] .. '.' .. string.format('%06d', tonumber(t[2]))
  local member, seq = stamp, 0
  while redis.call('ZADD', key, 'NX', stamp, member) == 0 do
    seq = seq + 1
    member = stamp .. '-' .. seq
  end
  redis.call('PEXPIRE', key, w / 1000)
  if p.count == 0 then
    p.reset = w
  end
  p.count = p.count + 1
  p.remaining = limit - p.count
end

decide.f = function(key, limit, w)
  local v = first('GET', key)
  if v and not tonumber(v) then
    -- a gcra value: another algorithm's key
    redis.call('DEL', key)
    v = false
  end
  local p = { count = tonumber(v) or 0, retry = 0 }
  p.ends = (math.floor(now / w) + 1) * w
  if p.count >= limit then
    p.retry = p.ends - now
  end
  p.remaining = limit - p.count
  return p
end

commit.f = function(key, limit, w, p)
  p.count = redis.call('INCR', key)
  redis.call('PEXPIREAT', key, p.ends / 1000)
  p.remaining = limit - p.count
end

decide.s = function(key, limit, w)
  local idx = math.floor(now / w)
  local h = first('HMGET', key, 'w', 'c', 'p')
  local hw, c, pc = tonumber(h[1]), tonumber(h[2]) or 0, tonumber(h[3]) or 0
  if hw == idx - 1 then
    pc, c = c, 0
  elseif hw ~= idx then
    pc, c = 0, 0
  end
  local into = now - idx * w
  local est = pc * (w - into) / w + c
  local p = { idx = idx, c = c, pc = pc, est = est, retry = 0,
              reset = w - into }
  if est + 1 > limit then
    if c + 1 <= limit and pc > 0 then
      -- later in this window, when the previous one weighs little enough
      p.retry = math.ceil(w - (limit - 1 - c) * w / pc - into)
    else
      -- in the next window, when this one's count weighs little enough
      p.retry = math.ceil(w - into + w - (limit - 1) * w / math.max(c, 1))
    end
    if p.retry < 1 then
      p.retry = 1
    end
  end
  p.count = math.floor(est)
  p.remaining = math.floor(limit - est)
  return p
end

commit.s = function(key, limit, w, p)
  redis.call('HSET', key, 'w', p.idx, 'c', p.c + 1, 'p', p.pc)
  redis.call('PEXPIRE', key, 2 * w / 1000)
  p.est = p.est + 1
  p.count = math.ceil(p.est)
  p.remaining = math.floor(limit - p.est)
end

decide.g = function(key, limit, w, burst)
  local interval = w / limit
  local v = first('GET', key)
  -- "g" and the time; anything else (a fixed_window count) is stale
  local tat = v and string.sub(v, 1, 1) == 'g'
              and tonumber(string.sub(v, 2)) or now
  if tat < now then
    tat = now
  end
  local p = { tat = tat, new_tat = tat + interval, retry = 0 }
  local allow_at = p.new_tat - burst * interval
  if allow_at > now then
    p.retry = allow_at - now
  end
  p.remaining = math.floor((now + burst * interval - tat) / interval)
  p.count = burst - p.remaining
  -- the next unit comes back when now + burst * interval - tat reaches
  -- (remaining + 1) * interval
  p.reset = tat - now - (burst - p.remaining - 1) * interval
  return p
end

commit.g = function(key, limit, w, p, burst)
  local interval = w / limit
  redis.call('SET', key, 'g' .. string.format('%d', math.ceil(p.new_tat)),
             'PX', math.max(1, math.ceil((p.new_tat - now) / 1000)))
  p.remaining = math.floor((now + burst * interval - p.new_tat) / interval)
  p.count = burst - p.remaining
  p.reset = p.new_tat - now - (burst - p.remaining - 1) * interval
end

local n = #KEYS
local plans = {}
local allowed = 1

for i = 1, n do
  local alg = ARGV[4 * i - 3]
  local limit = tonumber(ARGV[4 * i - 2])
  local w = tonumber(ARGV[4 * i - 1]) * 1000
  local p = decide[alg](KEYS[i], limit, w, tonumber(ARGV[4 * i]))
  if p.retry > 0 then
    allowed = 0
  end
  plans[i] = p
end

local out = { allowed, n }

for i = 1, n do
  local alg = ARGV[4 * i - 3]
  local limit = tonumber(ARGV[4 * i - 2])
  local w = tonumber(ARGV[4 * i - 1]) * 1000
  local burst = tonumber(ARGV[4 * i])
  local p = plans[i]
  if allowed == 1 then
    commit[alg](KEYS[i], limit, w, p, burst)
  end
  local reset = p.reset
  if alg == 'f' then
    reset = p.ends - now
  end
  if reset == nil or reset < 0 then
    reset = 0
  end
  if p.remaining < 0 then
    p.remaining = 0
  end
  if p.count < 0 then
    p.count = 0
  end
  out[#out + 1] = p.count
  out[#out + 1] = p.remaining
  out[#out + 1] = math.ceil(reset / 1000)
  out[#out + 1] = math.ceil(p.retry / 1000)
end

return out
)lua";


const char  algorithmCodes[] = "lsgf";

} /* namespace */


namespace rl {

const std::string &
limitScript()
{
    static const std::string  s(script, sizeof(script) - 1);

    return s;
}


const std::string &
limitSha()
{
    static const std::string  sha = sha1Hex(script, sizeof(script) - 1);

    return sha;
}


/*
 * Reuses the strings already in argv: a recycled check's argv keeps its
 * capacity, so building the next command allocates nothing.
 */
void
buildArgv(const rl_limit_arg_t *limits, size_t n,
    std::vector<std::string> *argv)
{
    char    num[24];
    size_t  k = 0;

    argv->resize(3 + 5 * n);

    (*argv)[k++].assign("EVALSHA");
    (*argv)[k++].assign(limitSha());
    (*argv)[k++].assign(num, (size_t) std::snprintf(num, sizeof(num), "%zu",
                                                     n));

    for (size_t i = 0; i < n; i++) {
        (*argv)[k++].assign(limits[i].key, limits[i].key_len);
    }

    for (size_t i = 0; i < n; i++) {
        uint64_t  burst = limits[i].burst ? limits[i].burst
                                          : limits[i].requests;

        (*argv)[k++].assign(1, algorithmCodes[limits[i].algorithm & 3]);
        (*argv)[k++].assign(num, (size_t) std::snprintf(num, sizeof(num),
                                          "%" PRIu64, limits[i].requests));
        (*argv)[k++].assign(num, (size_t) std::snprintf(num, sizeof(num),
                                          "%" PRIu64, limits[i].window_ms));
        (*argv)[k++].assign(num, (size_t) std::snprintf(num, sizeof(num),
                                          "%" PRIu64, burst));
    }
}

} /* namespace rl */
