/*
 * One atomic script decides a request against all its limits.
 *
 * It decides several checks (the requests a worker queued in one turn of
 * its event loop), one after the other, as if each came alone.  Checks
 * alike (the same keys under the same limits: one busy client's requests)
 * come as one group, and each limit's parameters once per call:
 *
 * ARGV[1]       the plan, one byte a number: the number of limits S, then
 *               for each group: its number of checks m, of limits n, and
 *               for each limit the number (1..S) of its parameters
 * ARGV[4k-2..4k+1]  the parameters numbered k:
 *                 its algorithm: l (sliding_log), s (sliding_window),
 *                 g (gcra), f (fixed_window)
 *                 requests allowed per window
 *                 window, milliseconds
 *                 burst (gcra)
 * KEYS          the n keys of each group, in order (PREFIX:KEY:NAME)
 *
 * (Redis' Lua spends more on tonumber() than on a whole check's
 * arithmetic: the plan is read with string.byte.)
 *
 * Time is the Redis server's (TIME), never a client's: every nginx host
 * shares one clock.  All limits are decided, reading only, before any is
 * counted: the request is counted in every limit or in none, so a rejected
 * request consumes nothing.  Every write waits for the end of the call, and
 * the first is one a Redis at maxmemory refuses (ZADD, SET, INCRBY, HSET,
 * HINCRBY; Redis lets a script that has written once write on), so such a
 * Redis refuses the whole call before anything is done; only a key of
 * another type, deleted before it is replaced, comes first.  Sliding-log
 * entries already out of the window are left out of the count when read,
 * and trimmed last.
 *
 * The keys of one check must differ (the client refuses a check that
 * names a key twice).
 *
 * Returns one flat array: for each check, for each of its limits: count,
 * remaining, reset_ms, retry_ms.  count is the number of requests in the
 * window (this one included when it passed), remaining what is still
 * allowed now, reset_ms the time until the next unit of quota comes back,
 * and retry_ms, for a limit that rejects, the time until a request would
 * pass: a check passed when no limit has one.  The checks of one call share
 * one instant (one TIME).
 *
 * sliding_log: a sorted set, one member per request ("seconds.micro", with
 *   "-N" on collisions), scored by the same instant; it expires one window
 *   after its newest entry.  Exact.  The oldest entry is read first: only
 *   when it has left the window are the old entries trimmed.
 * fixed_window: a counter that expires at the end of the epoch-aligned
 *   window (set when the count starts).  Up to twice the limit can pass
 *   around a window boundary.
 * sliding_window: a hash { w = window index, c = its count, p = the
 *   previous window's count }; the estimate weights p by the share of the
 *   sliding window still inside the previous fixed window.  It expires at
 *   the end of the window after w, when it no longer weighs.
 * gcra: "g" and the theoretical arrival time as a string, microseconds
 *   since the epoch with 6 decimals (older versions wrote none);
 *   one request per window/requests, up to burst at once.
 * A key another algorithm left (the limit's algorithm was changed) is
 * replaced: the first command on it fails with WRONGTYPE, or for the two
 * string kinds the "g" tells them apart.  No TYPE is asked on the way.
 *
 * Each key is read from Redis once per call, the first time a check needs
 * it (load), and written back once, after the last check (store): the
 * checks between decide and count on the copy.  Redis runs the script
 * alone, so each check is decided as if it had come in a call of its own,
 * while a batch of one busy client's requests costs a read and a write,
 * not one of each per request.  A key needed under another algorithm or
 * window than it was read with is stored and read again (a sliding log
 * then without the entries the first window trimmed).
 *
 * The script is written for Redis' Lua interpreter, which runs all of it
 * on every call: one table per key and per group, one for the reply, few
 * string conversions, and no command whose answer is already known.
 */

#include "rl_script.hpp"
#include "rl_limit.hpp"

#include <charconv>
#include <cstdio>


namespace {

const char  script[] = R"lua(
local t = redis.call('TIME')
local now = t[1] * 1000000 + t[2]
local stamp    -- a sliding-log member's name: made by the first log loaded
local state, order = {}, {}
local cuts, cutkeys = {}, {}
local res, r = {}, 0

-- what Redis holds for a key, read once per call; the checks of the call
-- then decide and count on it, and store() writes it back at the end.
-- Nothing is written here: a key another algorithm left is marked to be
-- replaced (wipe), and sliding_log's entries out of the window are left
-- out (everything up to the cut, which only grows within a call, as the
-- entries a check trims are gone for the next) and trimmed at the end,
-- so that the first write of a call is a store's.
local function load(key, a, w)
  local s = { key = key, a = a, w = w, n = 0 }
  if a == 'l' then
    if not stamp then
      stamp = t[1] .. '.' .. string.format('%06d', tonumber(t[2]))
    end
    local cut, c = now - w, cuts[key]
    if c and c.n > cut then
      cut = c.n
    end
    local cs = string.format('%d.%06d', math.floor(cut / 1000000),
                             cut % 1000000)
    s.above, s.count, s.m = '(' .. cs, 0, {}
    local o = redis.pcall('ZRANGE', key, 0, 0, 'WITHSCORES')
    local stale = false
    if o.err then
      s.wipe = true
    elseif o[2] then
      local first = math.floor(o[2] * 1000000 + 0.5)
      if first > cut then
        s.first = first
        s.count = redis.call('ZCARD', key)
      else
        stale = true
        s.count = redis.call('ZCOUNT', key, s.above, '+inf')
        if s.count > 0 then
          o = redis.call('ZRANGEBYSCORE', key, s.above, '+inf',
                         'WITHSCORES', 'LIMIT', 0, 1)
          s.first = math.floor(o[2] * 1000000 + 0.5)
        end
      end
    end
    if not c then
      c = {}
      cuts[key] = c
      cutkeys[#cutkeys + 1] = key
    end
    c.n, c.s, c.stale = cut, cs, c.stale or stale
  elseif a == 'g' then
    -- SET replaces a value of any type
    -- d: the time from now to the theoretical arrival time, if later;
    -- whole microseconds and their fraction apart, as a double holds
    -- only a quarter of a microsecond of the time since the epoch
    local v = redis.pcall('GET', key)
    s.d = 0
    if type(v) == 'string' and string.byte(v, 1) == 103 then
      local us, frac = string.match(v, '^g(%d+)%.?(%d*)$')
      if us then
        local d = tonumber(us) - now
        if frac ~= '' then
          d = d + tonumber(frac) / 10 ^ #frac
        end
        if d > 0 then
          s.d = d
        end
      end
    end
  elseif a == 'f' then
    local v = redis.pcall('GET', key)
    if type(v) == 'table' or (v and not tonumber(v)) then
      s.wipe = true
      v = false
    end
    s.count = tonumber(v) or 0
  else
    local h = redis.pcall('HMGET', key, 'w', 'c', 'p')
    if h.err then
      s.wipe = true
      h = {}
    end
    local idx = math.floor(now / w)
    local hw, c, pc = tonumber(h[1]), tonumber(h[2]) or 0, tonumber(h[3]) or 0
    if hw == idx - 1 then
      pc, c = c, 0
    elseif hw ~= idx then
      pc, c = 0, 0
    end
    s.idx, s.c, s.pc, s.same = idx, c, pc, hw == idx
  end
  return s
end

-- the time of the sliding-log entry at rank r (from 0) of those in the
-- window, counting the ones this call added at now
local function ranked(s, r)
  if s.wipe then
    return now
  end
  if s.n > 0 then
    -- they come after the stored ones up to now (a clock set back may have
    -- left later ones)
    local upto = redis.call('ZCOUNT', s.key, s.above, stamp)
    if r >= upto then
      if r < upto + s.n then
        return now
      end
      r = r - s.n
    end
  end
  local e = redis.call('ZRANGEBYSCORE', s.key, s.above, '+inf',
                       'WITHSCORES', 'LIMIT', r, 1)
  return math.floor(e[2] * 1000000 + 0.5)
end

-- writes back what the checks counted; the first command is one Redis
-- refuses at maxmemory (but for a key of another type, deleted first)
local function store(s)
  local key, w, n = s.key, s.w, s.n
  if n == 0 then
    return
  end
  if s.a == 'l' then
    if s.wipe then
      redis.call('DEL', key)
    end
    -- the new members, at most 100 a command
    local added, i = 0, 1
    while i <= n do
      local args, j = {}, 0
      while j < 200 and i <= n do
        args[j + 1], args[j + 2] = stamp, s.m[i]
        i, j = i + 1, j + 2
      end
      added = added + redis.call('ZADD', key, 'NX', unpack(args))
    end
    -- a member of an earlier call at the same instant: add more
    while added < n do
      added = added + redis.call('ZADD', key, 'NX', stamp,
                                 stamp .. '-' .. s.seq)
      s.seq = s.seq + 1
    end
    redis.call('PEXPIRE', key, w / 1000)
  elseif s.a == 'g' then
    -- to the picosecond, rounded up
    local d = s.d
    local us = math.floor(d)
    local ps = math.ceil((d - us) * 1000000)
    if ps >= 1000000 then
      us, ps = us + 1, 0
    end
    redis.call('SET', key, string.format('g%d.%06d', now + us, ps),
               'PX', math.max(1, math.ceil(d / 1000)))
  elseif s.a == 'f' then
    local count
    if s.wipe then
      count = n
      redis.call('SET', key, n)
    else
      count = redis.call('INCRBY', key, n)
    end
    if count == n then
      redis.call('PEXPIREAT', key, (math.floor(now / w) + 1) * w / 1000)
    end
  elseif s.same then
    redis.call('HINCRBY', key, 'c', n)
  else
    if s.wipe then
      redis.call('DEL', key)
    end
    redis.call('HSET', key, 'w', s.idx, 'c', s.c, 'p', s.pc)
    redis.call('PEXPIREAT', key, (s.idx + 2) * w / 1000)
  end
  s.n, s.wipe = 0, false
end

-- gcra's count, remaining and reset with the arrival time d ahead of now:
-- remaining, the units of quota back by now, where up to half a
-- microsecond missing (1/1024 of an interval shorter than 512 us) is the
-- rounding of the stored fractions, not a wait; on whole microseconds, one
-- missing is a wait
local function paced(burst, interval, d)
  local remaining = math.floor(burst - d / interval
                               + math.min(1 / 1024, 0.5 / interval))
  return burst - remaining, remaining,
         d - (burst - remaining - 1) * interval
end

-- the limits the checks name, each once: algorithm, requests, window (us),
-- burst
local plan, byte = ARGV[1], string.byte
local alg, lim, win, bur = {}, {}, {}, {}
for i = 1, byte(plan, 1) do
  local b = 4 * i - 2
  alg[i], lim[i] = ARGV[b], tonumber(ARGV[b + 1])
  win[i], bur[i] = tonumber(ARGV[b + 2]) * 1000, tonumber(ARGV[b + 3])
end

-- each group of the plan: m checks alike, of n limits (spec numbers
-- sp[1..n]) on the keys after KEYS[kb]
local p, kb = 2, 0
while p <= #plan do
  local m, n = byte(plan, p, p + 1)
  local sp = { byte(plan, p + 2, p + 1 + n) }
  local st = {}    -- the state of each limit's key

  for i = 1, n do
    local key, a, w = KEYS[kb + i], alg[sp[i]], win[sp[i]]
    local s = state[key]

    -- the key under another algorithm or window: as if it came alone
    if s and (s.a ~= a or s.w ~= w) then
      store(s)
      s = nil
    end
    if not s then
      s = load(key, a, w)
      state[key] = s
      order[#order + 1] = s
    end
    st[i] = s
  end

  for _ = 1, m do
    local allowed = true

    -- decide every limit: res[r + 4i - 3 .. r + 4i] = count, remaining,
    -- reset, retry (us until here)
    for i = 1, n do
      local s, si = st[i], sp[i]
      local a, limit, w = s.a, lim[si], s.w
      local count, remaining, reset, retry = 0, 0, 0, 0

      if a == 'l' then
        count = s.count
        if count > 0 then
          reset = (s.first or now) + w - now
          if count == limit then
            retry = reset
          elseif count > limit then
            retry = ranked(s, count - limit) + w - now
          end
        end
        remaining = limit - count

      elseif a == 'g' then
        local burst = bur[si]
        local interval = w / limit
        local d = s.d
        count, remaining, reset = paced(burst, interval, d)
        if remaining < 1 then
          retry = d + interval - burst * interval
        end

      elseif a == 'f' then
        count = s.count
        reset = (math.floor(now / w) + 1) * w - now
        if count >= limit then
          retry = reset
        end
        remaining = limit - count

      else
        local c, pc = s.c, s.pc
        local into = now - s.idx * w
        local est = pc * (w - into) / w + c
        reset = w - into
        if est + 1 > limit then
          if c + 1 <= limit and pc > 0 then
            retry = math.ceil(w - (limit - 1 - c) * w / pc - into)
          else
            retry = math.ceil(w - into + w - (limit - 1) * w / math.max(c, 1))
          end
          if retry < 1 then
            retry = 1
          end
        end
        count = math.floor(est)
        remaining = math.floor(limit - est)
      end

      if retry > 0 then
        allowed = false
      end
      local j = r + 4 * i
      res[j - 3], res[j - 2], res[j - 1], res[j] =
        count, remaining, reset, retry
    end

    -- count the request in every limit, or in none; the reply in ms
    for i = 1, n do
      local s, si = st[i], sp[i]
      local a, limit = s.a, lim[si]
      local j = r + 4 * i - 3
      local count, remaining, reset = res[j], res[j + 1], res[j + 2]

      if not allowed then
        -- nothing is counted
      elseif a == 'l' then
        -- checks of one call share the instant: each gets its own member
        local seq = s.seq or 0
        s.n = s.n + 1
        s.m[s.n] = seq == 0 and stamp or stamp .. '-' .. seq
        s.seq = seq + 1
        if count == 0 then
          reset = s.w
        end
        if not s.first or s.first > now then
          s.first = now
        end
        s.count = count + 1
        count = count + 1
        remaining = limit - count

      elseif a == 'g' then
        local burst = bur[si]
        local interval = s.w / limit
        local d = s.d + interval
        s.d, s.n = d, 1
        count, remaining, reset = paced(burst, interval, d)

      elseif a == 'f' then
        s.count, s.n = s.count + 1, s.n + 1
        count = s.count
        remaining = limit - count

      else
        local est = s.pc * (s.w - (now - s.idx * s.w)) / s.w + s.c + 1
        s.c, s.n = s.c + 1, s.n + 1
        count = math.ceil(est)
        remaining = math.floor(limit - est)
      end

      if count < 0 then
        count = 0
      end
      if remaining < 0 then
        remaining = 0
      end
      if reset < 0 then
        reset = 0
      end
      res[j], res[j + 1] = count, remaining
      res[j + 2] = math.ceil(reset / 1000)
      res[j + 3] = math.ceil(res[j + 3] / 1000)
    end

    r = r + 4 * n
  end

  kb = kb + n
  p = p + 2 + n
end

-- write back what the checks counted, once per key; then trim (a key
-- another algorithm has taken over since is not a log any more)
for i = 1, #order do
  store(order[i])
end
for i = 1, #cutkeys do
  local c = cuts[cutkeys[i]]
  if c.stale then
    redis.pcall('ZREMRANGEBYSCORE', cutkeys[i], '-inf', c.s)
  end
end

return res
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


namespace {

void
assignNumber(std::string *s, uint64_t n)
{
    char  num[24];

    s->assign(num, (size_t) (std::to_chars(num, num + sizeof(num), n).ptr
                             - num));
}


void
appendBulk(std::string *cmd, const char *data, size_t len)
{
    char  num[24];

    cmd->push_back('$');
    cmd->append(num, (size_t) (std::to_chars(num, num + sizeof(num), len).ptr
                               - num));
    cmd->append("\r\n", 2);
    cmd->append(data, len);
    cmd->append("\r\n", 2);
}

} /* namespace */


/*
 * Reuses the strings already there: a recycled check keeps their capacity,
 * so building the next one allocates nothing.
 */
void
buildCheck(const rl_limit_arg_t *limits, size_t n,
    std::vector<std::string> *keys, std::vector<LimitSpec> *specs)
{
    keys->resize(n);
    specs->resize(n);

    for (size_t i = 0; i < n; i++) {
        (*keys)[i].assign(limits[i].key, limits[i].key_len);

        (*specs)[i] = LimitSpec { algorithmCodes[limits[i].algorithm & 3],
                                  limits[i].requests, limits[i].window_ms,
                                  limits[i].burst ? limits[i].burst
                                                  : limits[i].requests };
    }
}


void
ScriptCall::clear() noexcept
{
    specs_.clear();
    plan_.clear();
    keys_.clear();
    lastKeys_ = nullptr;
    lastSpecs_ = nullptr;
}


void
ScriptCall::add(const std::vector<std::string> &keys,
    const std::vector<LimitSpec> &specs)
{
    if (plan_.empty()) {
        /* the number of limits, known in command() */
        plan_.push_back('\0');
    }

    if (lastKeys_ && *lastKeys_ == keys && *lastSpecs_ == specs
        && (unsigned char) plan_[lastGroup_] < 255)
    {
        plan_[lastGroup_]++;
        return;
    }

    lastGroup_ = plan_.size();
    plan_.push_back(1);
    plan_.push_back((char) specs.size());

    for (const LimitSpec &l : specs) {
        size_t  k = 0;

        while (k < specs_.size() && !(specs_[k] == l)) {
            k++;
        }

        if (k == specs_.size()) {
            specs_.push_back(l);
        }

        plan_.push_back((char) (k + 1));
    }

    for (const std::string &k : keys) {
        keys_.push_back(&k);
    }

    lastKeys_ = &keys;
    lastSpecs_ = &specs;
}


const std::string &
ScriptCall::command(bool eval)
{
    const std::string  &script = eval ? limitScript() : limitSha();
    size_t              nspecs = specs_.size();
    char                num[24];

    plan_[0] = (char) nspecs;

    specArgs_.resize(4 * nspecs);

    for (size_t k = 0; k < nspecs; k++) {
        specArgs_[4 * k].assign(1, specs_[k].algorithm);
        assignNumber(&specArgs_[4 * k + 1], specs_[k].requests);
        assignNumber(&specArgs_[4 * k + 2], specs_[k].window_ms);
        assignNumber(&specArgs_[4 * k + 3], specs_[k].burst);
    }

    assignNumber(&numKeys_, keys_.size());

    command_.clear();
    command_.push_back('*');
    command_.append(num, (size_t) (std::to_chars(num, num + sizeof(num),
                                                 3 + keys_.size() + 1
                                                 + 4 * nspecs).ptr - num));
    command_.append("\r\n", 2);

    if (eval) {
        appendBulk(&command_, "EVAL", 4);
    } else {
        appendBulk(&command_, "EVALSHA", 7);
    }

    appendBulk(&command_, script.data(), script.size());
    appendBulk(&command_, numKeys_.data(), numKeys_.size());

    for (const std::string *k : keys_) {
        appendBulk(&command_, k->data(), k->size());
    }

    appendBulk(&command_, plan_.data(), plan_.size());

    for (const std::string &a : specArgs_) {
        appendBulk(&command_, a.data(), a.size());
    }

    return command_;
}

} /* namespace rl */


extern "C" const char *
rl_limit_script(size_t *len) noexcept
{
    *len = sizeof(script) - 1;
    return script;
}
