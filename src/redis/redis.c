/*
 * redis.c - the Redis backend: the keyed limiter's limits (every kind)
 * evaluated atomically on a Redis server by one Lua script (docs/redis.md).
 *
 * The algorithms are the cells' (gcra.c, window_counter.c, calendar.c,
 * window_log.c, slots.c) and the composition is the keyed limiter's
 * (limiter.c): per scope, a dry run over every limit in the limiter's order
 * (its first GCRA limit, then the others) stops at the first denier and
 * writes nothing; the scope's slots limit is then taken; if nothing denies,
 * every limit is written. On Redis the script is atomic (no other command
 * runs during it), so the dry run and the writes need no receipts. One
 * write survives a denial, as in process: an earlier scope's slot taken over
 * from an expired lease is left free with the take-over recorded (deny()),
 * which is what the in-process engine's acquire and cancel leave; a
 * cross-slot cancel likewise releases such a slot instead of restoring it.
 * Each
 * limit's state is one field of the scope's hash (GCRA: F; counter:
 * "k_s:prev:cur"; calendar: "k_s:count"; log: the last `limit` unit times;
 * slots: tag, count and the slots' words).
 *
 * Division of labour. The script decides (it applies each cell's admission
 * test exactly) and reports every limit's state before the call; C rebuilds
 * each cell from that state in a private copy and runs the cell's own code
 * to fill the decision (remaining, reset_ns, retry_after_ns), so the
 * decision is the limiter's by construction (decide_state()).
 *
 * Exactness in Lua (doubles). Times (F, now) are up to 2^64 ns, stored as
 * decimal strings and split into (s = floor(x / 10^9), ns = x mod 10^9) by
 * string slicing: both parts are below 2^35 and exact. Durations (need,
 * slack, windows, leases, and any debt that can admit) are at most 2^52
 * (SLUICE_REDIS_MAX_TOLERANCE_NS, checked here before sending), so
 * debt = s * 10^9 + ns is exact whenever s < 4503600 (< 2^53), and a larger s
 * means debt > 2^52 >= slack: a denial, with the exact pair returned. The
 * counter's test (limit - cur - c) * W >= prev * (W - e) runs on base-2^32
 * limbs. Window indexes are kept mod 2^24 / 2^32 as in the cells. Every
 * floor division is corrected by exact multiplication.
 *
 * Cross-slot requests (cluster): admit_cross() reserves slot group by slot
 * group with receipts and cancels in reverse order on a denial. ASK (a slot
 * being migrated) is followed once per call, for every mode (ask_one(),
 * call_script()); TRYAGAIN (a call's keys split by the migration: the
 * script did not run) is resent after a short pause within the call's
 * deadline (rounds(), call_script(), tryagain_pause()).
 *
 * Deny cache (optional): requests whose limits are all GCRA or calendar
 * are denied locally while a state learnt from an earlier reply provably
 * still denies (GCRA: F only grows; calendar: the count only grows within
 * the window seen) (cache_try_deny(); docs/redis.md, "Deny cache").
 *
 * Local lease (optional): a hot GCRA-only, one-slot request shape takes L
 * units in one call and answers later requests from them locally
 * (lease_eligible(); docs/redis.md, "Local lease").
 *
 * Connections. One hiredis blocking context per node (one node unless in
 * cluster mode, where requests go to the node of their keys' hash slot:
 * CLUSTER SLOTS, then MOVED corrections). Every blocking step
 * (connect, write, read) gets the time left until the call's deadline as its
 * socket timeout, so a call never blocks past timeout_ns. A connection that
 * fails in a call is dropped; if it had been working (say the server
 * restarted) the call reconnects at once, within its deadline; otherwise the
 * next attempt waits for an exponential backoff and calls in between answer
 * by the fail mode without touching the network. NOSCRIPT reloads the script
 * and retries once. hiredis writes with write(2), which raises SIGPIPE on a
 * reset connection: SIGPIPE is blocked in the calling thread during I/O and a
 * pending one that we caused is consumed, so the process's signal handling
 * is left as it was.
 */
#include <sluice/redis.h>

#include "redis/redis_rank_internal.h"

#ifndef SLUICE_WITH_REDIS

int sluice_redis_create(struct sluice_redis **out, const struct sluice_redis_options *opts)
{
	(void)opts;
	if (out != NULL)
		*out = NULL;
	return SLUICE_EUNSUPPORTED;
}

void sluice_redis_destroy(struct sluice_redis *r)
{
	(void)r;
}

int sluice_redis_admit_scopes(struct sluice_redis *r, const struct sluice_redis_scope *scopes,
			      size_t nscopes, uint64_t cost, uint64_t now_ns, struct sluice_decision *out)
{
	(void)r, (void)scopes, (void)nscopes, (void)cost, (void)now_ns, (void)out;
	return SLUICE_EUNSUPPORTED;
}

int sluice_redis_admit(struct sluice_redis *r, const void *key, size_t key_len,
		       const struct sluice_limit *limits, size_t nlimits, uint64_t cost, uint64_t now_ns,
		       struct sluice_decision *out)
{
	(void)r, (void)key, (void)key_len, (void)limits, (void)nlimits, (void)cost, (void)now_ns,
		(void)out;
	return SLUICE_EUNSUPPORTED;
}

int sluice_redis_admit_batch(struct sluice_redis *r, const struct sluice_redis_request *reqs,
			     size_t n, uint64_t now_ns, struct sluice_decision *out)
{
	(void)r, (void)reqs, (void)n, (void)now_ns, (void)out;
	return SLUICE_EUNSUPPORTED;
}

int sluice_redis_acquire_scopes(struct sluice_redis *r, const struct sluice_redis_scope *scopes,
				size_t nscopes, uint64_t cost, uint64_t now_ns, struct sluice_decision *out,
				sluice_slot_handle *handles)
{
	(void)r, (void)scopes, (void)nscopes, (void)cost, (void)now_ns, (void)out, (void)handles;
	return SLUICE_EUNSUPPORTED;
}

int sluice_redis_release(struct sluice_redis *r, const struct sluice_redis_scope *scope,
			 sluice_slot_handle handle)
{
	(void)r, (void)scope, (void)handle;
	return SLUICE_EUNSUPPORTED;
}

int sluice_redis_stats(const struct sluice_redis *r, struct sluice_redis_stats *out)
{
	(void)r, (void)out;
	return SLUICE_EUNSUPPORTED;
}

void sluice__redis_set_tie_rank(struct sluice_redis *r, const uint32_t *rank, size_t n)
{
	(void)r, (void)rank, (void)n;
}

#else /* SLUICE_WITH_REDIS */

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include <hiredis/hiredis.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "limiter/limit_kind_internal.h"
#include "common/util_internal.h"

/*
 * The script. KEYS: one hash per scope. ARGV[1]: now in ns ("" = the
 * server's TIME), ARGV[2]: the mode, ARGV[3]: the expiry grace in ns,
 * ARGV[4]: the tag for a slots state created by this call.
 *
 * Modes "0" (peek), "1" (admit), "2" (reserve: admit and append receipts):
 * then per scope the number of limits k and k records, each a kind letter
 * and its arguments, in the order C decides them (docs/redis.md, "The
 * script"):
 *   g field need slack            GCRA (need -1: cost > burst)
 *   c field k_mod cost limit W e  sliding counter (k_mod, e "" = from TIME)
 *   k field k_mod cost limit W e  calendar (cost -1: cost > limit)
 *   s field N lease_ns            slots (lease "0": none)
 *   l field cost limit W t-W      sliding log (t-W: "" = from TIME, "-" < 0)
 * Answer: {status, flat index, now_s, now_ns, 4 integers per limit}:
 *   allowed: status 0, index -1, the state of every limit before the call
 *   denied:  status 1 (2: GCRA never), the denier's index and state only
 * where a state is: g: debt (s, ns); c: k_s (-1 missing), prev, cur;
 * k: k_s (-1 missing), count; s: in_use before, gen, index, tag of the
 * slot taken (0 if none); l: the log (its last `limit` unit times,
 * ascending, space-separated; "" if none) and three zeros. Mode "2"
 * appends, per field written, (key index, field, value before ("" =
 * absent), value after): the receipt.
 *
 * Mode "c" (cancel): ARGV[5..] are tuples (key index, field, before,
 * after); each field still holding `after` gets `before` back (HDEL for
 * ""). A slots field written since gets the slot we took released instead
 * (a semaphore's operations commute: exact, as sluice_slots_cancel()).
 * Answer: how many were restored.
 * Mode "r" (release): ARGV[5..9] = field, N, tag, gen, index of a slot
 * handle. Answer 0 released, 1 already released, 2 stale, 3 no such key.
 *
 * Expiry: a key gets PEXPIRE to the time until every limit written is full
 * again (plus the grace), never shortened; a key holding a slot without a
 * lease is PERSISTed until its last slot is released, then expires at the
 * time its other limits are full (field "_full", server ms). Needs
 * Redis >= 4.0 (HSET of several fields); on 3.2-4.x replicate_commands()
 * makes TIME before writes legal (effects replication, the only mode since
 * 7.0, where the call is a no-op).
 */
static const char script_text[] =
	"local B = 1000000000\n"
	"local T32 = 4294967296\n"
	"local NEVER = '18446744073709551615'\n"
	"local function fdiv(x, d)\n"
	"  local q = math.floor(x / d)\n"
	"  while q * d > x do q = q - 1 end\n"
	"  while (q + 1) * d <= x do q = q + 1 end\n"
	"  return q\n"
	"end\n"
	"local function split(s)\n"
	"  if not s then return 0, 0 end\n"
	"  local n = #s\n"
	"  if n <= 9 then return 0, tonumber(s) end\n"
	"  return tonumber(string.sub(s, 1, n - 9)), tonumber(string.sub(s, n - 8))\n"
	"end\n"
	"local function dec(h, l)\n"
	"  if h > 0 then return string.format('%d%09d', h, l) end\n"
	"  return string.format('%d', l)\n"
	"end\n"
	"local function dlt(x, y)\n"
	"  if #x ~= #y then return #x < #y end\n"
	"  return x < y\n"
	"end\n"
	"local function addsat(h, l, d)\n"
	"  local xl = l + d\n"
	"  local c = fdiv(xl, B)\n"
	"  local xh = h + c\n"
	"  xl = xl - c * B\n"
	"  if xh > 18446744073 or (xh == 18446744073 and xl > 709551615) then return NEVER end\n"
	"  return dec(xh, xl)\n"
	"end\n"
	"local function mul2(x, m)\n"
	"  local h = math.floor(x / T32)\n"
	"  local l = x - h * T32\n"
	"  local lo = l * m\n"
	"  local c = math.floor(lo / T32)\n"
	"  return h * m + c, lo - c * T32\n"
	"end\n"
	"local function sparse(v)\n"
	"  local st = {slot = {}}\n"
	"  local it = string.gmatch(v, '[^;]+')\n"
	"  local t, u = string.match(it(), '^(%d+),(%d+)$')\n"
	"  st.tag, st.n = tonumber(t), tonumber(u)\n"
	"  for rec in it do\n"
	"    local i, g, r, ph, d = string.match(rec, '^(%d+),(%d+),(%d+),(%d),(%d+)$')\n"
	"    st.slot[tonumber(i)] = {g = tonumber(g), r = tonumber(r), ph = tonumber(ph), d = d}\n"
	"  end\n"
	"  return st\n"
	"end\n"
	"local function sser(st, n)\n"
	"  local parts = {string.format('%d,%d', st.tag, st.n)}\n"
	"  for i = 0, n - 1 do\n"
	"    local s = st.slot[i]\n"
	"    if s then parts[#parts + 1] = string.format('%d,%d,%d,%d,', i, s.g, s.r, s.ph) .. s.d end\n"
	"  end\n"
	"  return table.concat(parts, ';')\n"
	"end\n"
	"local function nextgen(g)\n"
	"  g = (g + 1) % 268435456\n"
	"  if g == 0 then g = 1 end\n"
	"  return g\n"
	"end\n"
	"local function server_ms()\n"
	"  local t = redis.call('TIME')\n"
	"  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
	"end\n"
	"local function settle(key, nowms)\n"
	"  if redis.call('PTTL', key) ~= -1 then return end\n"
	"  local all = redis.call('HGETALL', key)\n"
	"  local full = nil\n"
	"  for j = 1, #all, 2 do\n"
	"    local f = all[j]\n"
	"    if string.sub(f, 1, 1) == 's' and sparse(all[j + 1]).n > 0 then return end\n"
	"    if f == '_full' then full = tonumber(all[j + 1]) end\n"
	"  end\n"
	"  local ms = 1\n"
	"  if full and full - nowms > ms then ms = full - nowms end\n"
	"  redis.call('PEXPIRE', key, ms)\n"
	"end\n"
	"if redis.replicate_commands then redis.replicate_commands() end\n"
	"local mode = ARGV[2]\n"
	"if mode == 'c' then\n"
	"  local n, touched = 0, {}\n"
	"  local a = 5\n"
	"  while a + 3 <= #ARGV do\n"
	"    local ki = tonumber(ARGV[a])\n"
	"    local key, f, before, after = KEYS[ki], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]\n"
	"    a = a + 4\n"
	"    local cur = redis.call('HGET', key, f)\n"
	"    local over = false\n"
	"    if cur == after and before ~= '' and string.sub(f, 1, 1) == 's' then\n"
	"      local x, b = sparse(after), sparse(before)\n"
	"      for i, y in pairs(x.slot) do\n"
	"        local o = b.slot[i]\n"
	"        if y.ph == 2 and o and o.ph == 2 and o.g ~= y.g then over = true end\n"
	"      end\n"
	"    end\n"
	"    if cur == after and not over then\n"
	"      if before == '' then redis.call('HDEL', key, f) else redis.call('HSET', key, f, before) end\n"
	"      n = n + 1\n"
	"      touched[ki] = true\n"
	"    elseif cur and string.sub(f, 1, 1) == 's' then\n"
	"      local x, b, c = sparse(after), nil, sparse(cur)\n"
	"      if before ~= '' then b = sparse(before) end\n"
	"      local ns = tonumber(string.match(f, '^s%d+:(%d+):'))\n"
	"      for i, y in pairs(x.slot) do\n"
	"        local o = b and b.slot[i]\n"
	"        local z = c.slot[i]\n"
	"        if y.ph == 2 and (not o or o.g ~= y.g) and c.tag == x.tag and z and z.g == y.g and z.ph == 2 then\n"
	"          z.ph = 0\n"
	"          c.n = c.n - 1\n"
	"          redis.call('HSET', key, f, sser(c, ns))\n"
	"          n = n + 1\n"
	"          touched[ki] = true\n"
	"        end\n"
	"      end\n"
	"    end\n"
	"  end\n"
	"  local nowms = nil\n"
	"  for ki, _ in pairs(touched) do\n"
	"    if redis.call('EXISTS', KEYS[ki]) == 1 then\n"
	"      nowms = nowms or server_ms()\n"
	"      settle(KEYS[ki], nowms)\n"
	"    end\n"
	"  end\n"
	"  return n\n"
	"end\n"
	"if mode == 'r' then\n"
	"  local key = KEYS[1]\n"
	"  if redis.call('EXISTS', key) == 0 then return 3 end\n"
	"  local v = redis.call('HGET', key, ARGV[5])\n"
	"  if not v then return 2 end\n"
	"  local st = sparse(v)\n"
	"  local n, g, i = tonumber(ARGV[6]), tonumber(ARGV[8]), tonumber(ARGV[9])\n"
	"  if st.tag ~= tonumber(ARGV[7]) then return 2 end\n"
	"  local s = st.slot[i]\n"
	"  if not s or s.g ~= g or s.ph ~= 2 then\n"
	"    if s and s.r == g then return 2 end\n"
	"    return 1\n"
	"  end\n"
	"  s.ph = 0\n"
	"  st.n = st.n - 1\n"
	"  redis.call('HSET', key, ARGV[5], sser(st, n))\n"
	"  if st.n == 0 then settle(key, server_ms()) end\n"
	"  return 0\n"
	"end\n"
	"local nh, nl\n"
	"if ARGV[1] == '' then\n"
	"  local t = redis.call('TIME')\n"
	"  nh, nl = tonumber(t[1]), tonumber(t[2]) * 1000\n"
	"else\n"
	"  nh, nl = split(ARGV[1])\n"
	"end\n"
	"local nowstr = dec(nh, nl)\n"
	"local now_us = nil\n"
	"local function wpos(p, mod)\n"
	"  local W = tonumber(ARGV[p + 5])\n"
	"  local ki, e\n"
	"  if ARGV[p + 2] == '' then\n"
	"    now_us = now_us or (nh * 1000000 + fdiv(nl, 1000))\n"
	"    local wus = W / 1000\n"
	"    local k = fdiv(now_us, wus)\n"
	"    ki = k % mod\n"
	"    e = (now_us - k * wus) * 1000\n"
	"  else\n"
	"    ki, e = tonumber(ARGV[p + 2]), tonumber(ARGV[p + 6])\n"
	"  end\n"
	"  return ki, W, W - e\n"
	"end\n"
	"local write = mode ~= '0'\n"
	"local grace = tonumber(ARGV[3])\n"
	"local grace_ms = fdiv(grace + 999999, 1000000)\n"
	"local tag = tonumber(ARGV[4])\n"
	"local NARGS = {g = 3, c = 6, k = 6, s = 3, l = 5}\n"
	"local CAP = 1125899906842624\n"
	"local a, flat = 5, 0\n"
	"local out = {0, -1, nh, nl}\n"
	"local plan = {}\n"
	"local function deny(t)\n"
	"  for q = 1, #plan do\n"
	"    local sl = plan[q][4]\n"
	"    if sl and sl.over then\n"
	"      sl.st.slot[sl.got].ph = 0\n"
	"      sl.st.n = sl.st.n - 1\n"
	"      redis.call('HSET', KEYS[q], sl.f, sser(sl.st, sl.n))\n"
	"    end\n"
	"  end\n"
	"  return t\n"
	"end\n"
	"for s = 1, #KEYS do\n"
	"  local k = tonumber(ARGV[a]); a = a + 1\n"
	"  local fields, pos = {}, {}\n"
	"  for i = 1, k do\n"
	"    fields[i] = ARGV[a + 1]\n"
	"    pos[i] = a\n"
	"    a = a + 1 + NARGS[ARGV[a]]\n"
	"  end\n"
	"  local vals = redis.call('HMGET', KEYS[s], unpack(fields))\n"
	"  local sets, befores, ttl = {}, {}, 0\n"
	"  local sl = nil\n"
	"  for i = 1, k do\n"
	"    local p, v = pos[i], vals[i]\n"
	"    local kind = ARGV[p]\n"
	"    local o = #out\n"
	"    out[o + 1], out[o + 2], out[o + 3], out[o + 4] = 0, 0, 0, 0\n"
	"    if kind == 'g' then\n"
	"      local need, slack = tonumber(ARGV[p + 2]), tonumber(ARGV[p + 3])\n"
	"      local bh, bl = split(v)\n"
	"      if bh < nh or (bh == nh and bl < nl) then bh, bl = nh, nl end\n"
	"      local dh, dl = bh - nh, bl - nl\n"
	"      if dl < 0 then dh, dl = dh - 1, dl + B end\n"
	"      out[o + 1], out[o + 2] = dh, dl\n"
	"      if write then\n"
	"        local st = 0\n"
	"        local after\n"
	"        if need < 0 then\n"
	"          st = 2\n"
	"        else\n"
	"          local xl = bl + need\n"
	"          local c = fdiv(xl, B)\n"
	"          local xh = bh + c\n"
	"          xl = xl - c * B\n"
	"          if xh > 18446744073 or (xh == 18446744073 and xl > 709551613) then\n"
	"            st = 2\n"
	"          elseif dh >= 4503600 or dh * B + dl > slack then\n"
	"            st = 1\n"
	"          else\n"
	"            after = dec(xh, xl)\n"
	"            local post = fdiv(dh * B + dl + need + grace + 999999, 1000000)\n"
	"            if post > ttl then ttl = post end\n"
	"          end\n"
	"        end\n"
	"        if st ~= 0 then return deny({st, flat + i - 1, nh, nl, dh, dl, 0, 0}) end\n"
	"        sets[#sets + 1] = fields[i]; sets[#sets + 1] = after; befores[#befores + 1] = v or ''\n"
	"      end\n"
	"    elseif kind == 'c' then\n"
	"      local ki, W, A = wpos(p, 16777216)\n"
	"      local cost, lim = tonumber(ARGV[p + 3]), tonumber(ARGV[p + 4])\n"
	"      local wms, rms = fdiv(W + 999999, 1000000), fdiv(A + 999999, 1000000)\n"
	"      local idx, pv, cu, ahead = ki, 0, 0, 0\n"
	"      out[o + 1] = -1\n"
	"      if v then\n"
	"        local x, y, z = string.match(v, '^(%d+):(%d+):(%d+)$')\n"
	"        local ks, sp, sc = tonumber(x), tonumber(y), tonumber(z)\n"
	"        out[o + 1], out[o + 2], out[o + 3] = ks, sp, sc\n"
	"        local d = (ki - ks) % 16777216\n"
	"        if d == 0 then idx, pv, cu = ks, sp, sc\n"
	"        elseif d == 1 then idx, pv, cu = ki, sc, 0\n"
	"        elseif d < 8388608 then idx, pv, cu = ki, 0, 0\n"
	"        else idx, pv, cu, ahead = ks, sp, sc, 16777216 - d; A = W end\n"
	"      end\n"
	"      if write then\n"
	"        if cost < 0 or cu + cost > lim then return deny({1, flat + i - 1, nh, nl, out[o + 1], out[o + 2], out[o + 3], 0}) end\n"
	"        local rh, rl = mul2(W, lim - cu - cost)\n"
	"        local uh, ul = mul2(A, pv)\n"
	"        if rh < uh or (rh == uh and rl < ul) then return deny({1, flat + i - 1, nh, nl, out[o + 1], out[o + 2], out[o + 3], 0}) end\n"
	"        sets[#sets + 1] = fields[i]; sets[#sets + 1] = string.format('%d:%d:%d', idx, pv, cu + cost); befores[#befores + 1] = v or ''\n"
	"        local ms = math.min(ahead * wms + wms + rms, CAP) + grace_ms\n"
	"        if ms > ttl then ttl = ms end\n"
	"      end\n"
	"    elseif kind == 'k' then\n"
	"      local ki, W, A = wpos(p, 4294967296)\n"
	"      local cost, lim = tonumber(ARGV[p + 3]), tonumber(ARGV[p + 4])\n"
	"      local wms, rms = fdiv(W + 999999, 1000000), fdiv(A + 999999, 1000000)\n"
	"      local idx, cnt, ahead = ki, 0, 0\n"
	"      out[o + 1] = -1\n"
	"      if v then\n"
	"        local x, y = string.match(v, '^(%d+):(%d+)$')\n"
	"        local ks, sc = tonumber(x), tonumber(y)\n"
	"        out[o + 1], out[o + 2] = ks, sc\n"
	"        local d = (ki - ks) % 4294967296\n"
	"        if d == 0 then idx, cnt = ks, sc\n"
	"        elseif d < 2147483648 then idx, cnt = ki, 0\n"
	"        else idx, cnt, ahead = ks, sc, 4294967296 - d end\n"
	"      end\n"
	"      if write then\n"
	"        if cost < 0 or cnt + cost > lim then return deny({1, flat + i - 1, nh, nl, out[o + 1], out[o + 2], 0, 0}) end\n"
	"        sets[#sets + 1] = fields[i]; sets[#sets + 1] = string.format('%d:%d', idx, cnt + cost); befores[#befores + 1] = v or ''\n"
	"        local ms = math.min(ahead * wms + rms, CAP) + grace_ms\n"
	"        if ms > ttl then ttl = ms end\n"
	"      end\n"
	"    elseif kind == 'l' then\n"
	"      local cost, lim, W = tonumber(ARGV[p + 2]), tonumber(ARGV[p + 3]), tonumber(ARGV[p + 4])\n"
	"      local th, tl = -1, 0\n"
	"      if ARGV[p + 5] ~= '' then\n"
	"        if ARGV[p + 5] ~= '-' then th, tl = split(ARGV[p + 5]) end\n"
	"      else\n"
	"        local wh = fdiv(W, B)\n"
	"        th, tl = nh - wh, nl - (W - wh * B)\n"
	"        if tl < 0 then th, tl = th - 1, tl + B end\n"
	"      end\n"
	"      local ts = {}\n"
	"      if v and #v > 0 then\n"
	"        for x in string.gmatch(v, '%d+') do ts[#ts + 1] = x end\n"
	"      end\n"
	"      local gone = 0\n"
	"      while gone < #ts do\n"
	"        local rh, rl = split(ts[gone + 1])\n"
	"        if rh < th or (rh == th and rl <= tl) then gone = gone + 1 else break end\n"
	"      end\n"
	"      out[o + 1] = v or ''\n"
	"      if write then\n"
	"        if cost < 0 or #ts - gone + cost > lim then return deny({1, flat + i - 1, nh, nl, v or '', 0, 0, 0}) end\n"
	"        local rh, rl = nh, nl\n"
	"        if #ts > 0 then\n"
	"          local lh, ll = split(ts[#ts])\n"
	"          if lh > rh or (lh == rh and ll > rl) then rh, rl = lh, ll end\n"
	"        end\n"
	"        local r = dec(rh, rl)\n"
	"        for j = 1, cost do ts[#ts + 1] = r end\n"
	"        local keep = {}\n"
	"        for j = math.max(1, #ts - lim + 1), #ts do keep[#keep + 1] = ts[j] end\n"
	"        sets[#sets + 1] = fields[i]; sets[#sets + 1] = table.concat(keep, ' '); befores[#befores + 1] = v or ''\n"
	"        local dh, dl = rh - nh, rl - nl\n"
	"        if dl < 0 then dh, dl = dh - 1, dl + B end\n"
	"        local ms = math.min(dh * 1000 + fdiv(dl + W + 999999, 1000000), CAP) + grace_ms\n"
	"        if ms > ttl then ttl = ms end\n"
	"      end\n"
	"    else\n"
	"      local n, lease = tonumber(ARGV[p + 2]), ARGV[p + 3]\n"
	"      local st\n"
	"      if v then st = sparse(v) else st = {tag = (tag + s - 2) % 16777215 + 1, n = 0, slot = {}} end\n"
	"      out[o + 1] = st.n\n"
	"      if write then\n"
	"        if st.n >= n and lease == '0' then return deny({1, flat + i - 1, nh, nl, st.n, 0, 0, 0}) end\n"
	"        sl = {i = i, o = o, st = st, n = n, lease = lease, v = v, f = fields[i]}\n"
	"      end\n"
	"    end\n"
	"  end\n"
	"  if sl then\n"
	"    local st, n = sl.st, sl.n\n"
	"    local dl = NEVER\n"
	"    if sl.lease ~= '0' then dl = addsat(nh, nl, tonumber(sl.lease)) end\n"
	"    local got = nil\n"
	"    if st.n >= n then\n"
	"      for j = 0, n - 1 do\n"
	"        local x = st.slot[j]\n"
	"        if x and x.ph == 2 and not dlt(nowstr, x.d) then\n"
	"          got = j\n"
	"          sl.over = true\n"
	"          st.slot[j] = {g = nextgen(x.g), r = x.g, ph = 2, d = dl}\n"
	"          break\n"
	"        end\n"
	"      end\n"
	"      if not got then return deny({1, flat + sl.i - 1, nh, nl, st.n, 0, 0, 0}) end\n"
	"    else\n"
	"      local j = st.n\n"
	"      while st.slot[j] and st.slot[j].ph ~= 0 do j = (j + 1) % n end\n"
	"      local x = st.slot[j] or {g = 0, r = 0}\n"
	"      st.slot[j] = {g = nextgen(x.g), r = x.r, ph = 2, d = dl}\n"
	"      st.n = st.n + 1\n"
	"      got = j\n"
	"    end\n"
	"    sl.got = got\n"
	"    out[sl.o + 2], out[sl.o + 3], out[sl.o + 4] = st.slot[got].g, got, st.tag\n"
	"    sets[#sets + 1] = fields[sl.i]; sets[#sets + 1] = sser(st, n); befores[#befores + 1] = sl.v or ''\n"
	"  end\n"
	"  flat = flat + k\n"
	"  plan[s] = {sets, befores, ttl, sl}\n"
	"end\n"
	"if write then\n"
	"  local nowms = nil\n"
	"  for s = 1, #KEYS do\n"
	"    local p = plan[s]\n"
	"    local sets, befores, ttl, sl = p[1], p[2], p[3], p[4]\n"
	"    if ttl < 1 then ttl = math.max(grace_ms, 1) end\n"
	"    if sl then\n"
	"      nowms = nowms or server_ms()\n"
	"      local full = string.format('%d', nowms + ttl)\n"
	"      local old = redis.call('HGET', KEYS[s], '_full')\n"
	"      if old and tonumber(old) > nowms + ttl then full = old end\n"
	"      sets[#sets + 1] = '_full'; sets[#sets + 1] = full; befores[#befores + 1] = old or ''\n"
	"      if sl.lease == '0' then\n"
	"        ttl = 0\n"
	"      else\n"
	"        local lms = fdiv(tonumber(sl.lease) + 999999, 1000000) + grace_ms\n"
	"        if lms > ttl then ttl = lms end\n"
	"      end\n"
	"    end\n"
	"    redis.call('HSET', KEYS[s], unpack(sets))\n"
	"    if ttl == 0 then\n"
	"      redis.call('PERSIST', KEYS[s])\n"
	"    elseif redis.call('PTTL', KEYS[s]) < ttl then\n"
	"      redis.call('PEXPIRE', KEYS[s], ttl)\n"
	"    end\n"
	"    if mode == '2' then\n"
	"      for j = 1, #befores do\n"
	"        out[#out + 1] = s; out[#out + 1] = sets[2 * j - 1]; out[#out + 1] = befores[j]; out[#out + 1] = sets[2 * j]\n"
	"      end\n"
	"    end\n"
	"  end\n"
	"end\n"
	"return out\n";

enum { ST_OK = 0, ST_RATE = 1, ST_NEVER = 2 };

/* Bound on the arguments of one script call: EVALSHA sha numkeys, keys,
 * now, mode, grace, tag, then per scope k and at most 7 per limit; a
 * cancel has 4 per field written (every limit, plus "_full" per scope). */
#define MAX_ARGS                                                                                    \
	(3 + 4 + 2 * SLUICE_REDIS_MAX_SCOPES + 7 * SLUICE_REDIS_MAX_LIMITS +                          \
	 4 * (SLUICE_REDIS_MAX_LIMITS + SLUICE_REDIS_MAX_SCOPES))
/* Longest field name ("i:interval:tau", "c<i>:<limit>:<window>", ...) and
 * number. */
#define FIELD_MAX 48
#define NUM_MAX 24
/* Numbers per limit in build_args' scratch (the window kinds' five). */
#define NUMS_PER_LIMIT 5

/* Script modes (ARGV[2]). */
#define MODE_PEEK '0'
#define MODE_ADMIT '1'
#define MODE_RESERVE '2'

/* One slot of the local deny cache: what this handle last learnt of one
 * (key, limit), in the clock the cache uses (cache_now()). GCRA: until_ns
 * is F (a lower bound of the server's). Calendar: word is the cell's word
 * (window index and count) as the server held it, until_ns the end of that
 * window, and offset_ns the calendar's time minus the cache clock at the
 * moment the state was read (the server's TIME less our send time; 0 with
 * the caller's clock), so t + offset_ns is an estimate of the calendar's
 * time that is never early (docs/redis.md, "Deny cache"). */
struct deny_slot {
	uint64_t tag; /* 0: empty */
	uint64_t until_ns;
	uint64_t word;
	uint64_t offset_ns;
};

/* A request, validated and flattened. Limits are in the order they are
 * decided: scope by scope, and within a scope the keyed limiter's order
 * (its first GCRA limit, then the others as given). */
struct prepared {
	const struct sluice_redis_request *req;
	size_t nlimits;
	const struct sluice_limit *limit[SLUICE_REDIS_MAX_LIMITS];
	uint64_t tag[SLUICE_REDIS_MAX_LIMITS];   /* deny-cache tags */
	uint16_t index[SLUICE_REDIS_MAX_LIMITS]; /* limit[j]'s index in its scope */
	uint8_t scope[SLUICE_REDIS_MAX_LIMITS];  /* limit[j]'s scope in req */
	/* Per scope of req: the caller's flat index of its limit 0 and the
	 * caller's scope index (differ from req's for a cross-slot group). */
	uint32_t base[SLUICE_REDIS_MAX_SCOPES];
	uint8_t caller_scope[SLUICE_REDIS_MAX_SCOPES];
	uint32_t slot;      /* cluster hash slot of its first key */
	char mode;          /* MODE_* */
	bool all_gcra;      /* every limit GCRA (the lease applies) */
	bool all_cacheable; /* every limit GCRA or calendar (the deny cache applies) */
	bool has_slots;     /* some scope has a SLOTS limit */
	bool cross;         /* cluster: keys on more than one slot */
	bool done;          /* decided (locally or from a reply) */
	bool sent;          /* in the current pipeline */
	redisReply *reply;  /* MODE_RESERVE: the reply, kept for its receipts */
	sluice_slot_handle *handles; /* acquire: one per caller scope; else NULL */
	/* Local lease (lease_eligible()): while this request takes a lease,
	 * req points to take (the caller's request with cost = the lease's
	 * units) and orig to the caller's request; lease is its entry,
	 * lease_sig its shape. */
	const struct sluice_redis_request *orig;
	struct sluice_redis_request take;
	struct lease *lease;
	uint64_t lease_sig;
	int ask_node; /* cluster: the node an ASK reply named; -1: none */
	bool tryagain; /* cluster: answered TRYAGAIN; resent after a pause (rounds()) */
};

/* One entry of the lease table: a request shape's heat and its lease. */
struct lease {
	uint64_t sig;           /* request shape (hash of its deny-cache tags); 0: empty */
	uint64_t heat_start_ns; /* start of the current heat window */
	uint32_t hits;          /* requests of this shape since heat_start_ns */
	bool taking;            /* a request of the current call takes this lease */
	uint64_t left;          /* leased units not yet spent (0: no lease) */
	uint64_t start_ns;      /* the lease's start: before its round trip was sent */
	uint64_t gov_tat_ns;    /* the governing limit's F right after the take */
	uint64_t gov_limit;     /* the governing limit's limit */
	uint32_t gov_index;     /* and its flat index */
};

/* One slot group of a cross-slot request (admit_cross()). */
struct group {
	struct sluice_redis_scope sc[SLUICE_REDIS_MAX_SCOPES];
	struct sluice_redis_request req;
	struct prepared p;
};

/* One server: the configured one, or in cluster mode any node we learnt. */
#define MAX_NODES 16
#define HOST_MAX 256
#define CLUSTER_SLOTS 16384

struct node {
	redisContext *ctx; /* NULL: not connected */
	bool ever_worked;  /* ctx has answered a script call since it connected */
	char host[HOST_MAX];
	int port;
	uint64_t backoff_ns;      /* the next wait */
	uint64_t next_attempt_ns; /* monotonic; no connect before it */
};

struct sluice_redis {
	struct node nodes[MAX_NODES]; /* nodes[0]: the configured server */
	uint32_t nnodes;
	uint8_t *slot_node; /* cluster mode: node index per hash slot; else NULL */
	char sha[41];
	uint32_t fail_mode;
	uint32_t flags;
	uint64_t timeout_ns;
	char grace[NUM_MAX]; /* expiry grace, decimal ns */
	size_t grace_len;
	uint64_t backoff_min_ns;
	uint64_t backoff_max_ns;
	char *prefix;
	size_t prefix_len;
	struct deny_slot *cache;
	uint64_t cache_mask;
	uint64_t cache_seed;
	/* Scratch for one call's arguments: no allocation per call. */
	char *buf;
	size_t buf_cap;
	const char *argv[MAX_ARGS];
	size_t argvlen[MAX_ARGS];
	struct prepared *prep; /* batch scratch */
	size_t prep_cap;
	uint64_t slots_tag; /* the tag of a slots state this call creates */
	uint64_t next_tag;  /* the next call's (random start: two handles differ) */
	struct group *groups; /* cluster: scratch of admit_cross() */
	uint64_t call_deadline_ns; /* admit_cross(): the reserves' deadline; else 0 */
	/* sluice__redis_set_tie_rank(): rank of each caller scope for a full
	 * tie of the governing rule (NULL: ties to the first). */
	uint32_t tie_rank[SLUICE_REDIS_MAX_SCOPES];
	bool tie_ranked;
	struct sluice_window_log *log_cell; /* decide_state() scratch; NULL until a log is used */
	struct sluice_redis_stats st;
	/* The local lease (off: lease == NULL). */
	struct lease *lease;
	uint64_t lease_mask;
	uint64_t lease_units;
	uint64_t lease_hot_hits;
	uint64_t lease_ttl_ns;
};

/* ---- small helpers ---- */

static struct timeval tv_of(uint64_t ns)
{
	struct timeval tv;

	if (ns < 1000)
		ns = 1000; /* a zero timeval means "no timeout" to setsockopt */
	tv.tv_sec = (time_t)(ns / SLUICE_NS_PER_SEC);
	tv.tv_usec = (suseconds_t)(ns % SLUICE_NS_PER_SEC / 1000);
	return tv;
}

/* Time left before the deadline, 0 if none. */
static uint64_t time_left(uint64_t deadline_ns)
{
	uint64_t now = sluice_monotonic_ns();
	return deadline_ns > now ? deadline_ns - now : 0;
}

/*
 * TRYAGAIN (cluster): a multi-key call whose keys a live slot migration has
 * split between the two nodes is refused, unrun, until the last of them
 * has moved. The call is resent after a pause of 1 ms, doubling up to 8 ms,
 * while its deadline allows (docs/redis.md, "TRYAGAIN": why these pauses).
 */
#define TRYAGAIN_PAUSE_MIN_NS (UINT64_C(1000000))
#define TRYAGAIN_PAUSE_MAX_NS (UINT64_C(8000000))

/* Sleep *pause_ns before a TRYAGAIN retry and double it (up to the cap).
 * False, without sleeping, when the pause would end at or past the
 * deadline: no time would be left to send the retry, so the call answers
 * by the fail mode now (counted as a timeout). */
static bool tryagain_pause(struct sluice_redis *r, uint64_t deadline_ns, uint64_t *pause_ns)
{
	uint64_t left = time_left(deadline_ns);
	if (left <= *pause_ns) {
		r->st.timeouts++;
		return false;
	}
	struct timespec ts = { (time_t)(*pause_ns / SLUICE_NS_PER_SEC), (long)(*pause_ns % SLUICE_NS_PER_SEC) };
	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
	*pause_ns = *pause_ns * 2 > TRYAGAIN_PAUSE_MAX_NS ? TRYAGAIN_PAUSE_MAX_NS : *pause_ns * 2;
	return true;
}

/* SIGPIPE guard: see the file comment. */
struct sigpipe_guard {
	sigset_t old;
	bool was_pending;
};

static void sigpipe_block(struct sigpipe_guard *g)
{
	sigset_t set, pending;

	sigemptyset(&set);
	sigaddset(&set, SIGPIPE);
	sigemptyset(&pending);
	sigpending(&pending);
	g->was_pending = sigismember(&pending, SIGPIPE) == 1;
	pthread_sigmask(SIG_BLOCK, &set, &g->old);
}

static void sigpipe_restore(const struct sigpipe_guard *g)
{
	sigset_t set, pending;

	if (!g->was_pending) {
		sigemptyset(&pending);
		sigpending(&pending);
		if (sigismember(&pending, SIGPIPE) == 1) {
			sigemptyset(&set);
			sigaddset(&set, SIGPIPE);
			struct timespec zero = { 0, 0 };
			while (sigtimedwait(&set, NULL, &zero) == -1 && errno == EINTR)
				;
		}
	}
	pthread_sigmask(SIG_SETMASK, &g->old, NULL);
}

/* ---- decisions ---- */

/* gcra.c's fill() for a limit whose debt after the decision is `debt`. */
static void fill(struct sluice_decision *out, const struct sluice_rate *rate, bool allowed,
		 uint64_t debt, uint64_t retry_after_ns, uint8_t reason)
{
	out->allowed = allowed;
	out->degraded = false;
	out->reason = reason;
	out->reserved_ = 0;
	out->limit_index = 0;
	out->limit = rate->limit;
	out->remaining = debt >= rate->tolerance_ns ? 0 : (rate->tolerance_ns - debt) / rate->interval_ns;
	out->reset_ns = debt;
	out->retry_after_ns = retry_after_ns;
}

/* The decision of one limit given its debt before the request, as gcra.c's
 * admit()/check would make it (status from the script or the cache). */
static void decide_limit(struct sluice_decision *out, const struct sluice_rate *rate, int status,
			 uint64_t debt, uint64_t cost)
{
	if (status == ST_NEVER) {
		fill(out, rate, false, debt, SLUICE_NEVER, SLUICE_REASON_NEVER);
	} else if (status == ST_RATE) {
		uint64_t slack = rate->tolerance_ns - cost * rate->interval_ns;
		fill(out, rate, false, debt, debt - slack, SLUICE_REASON_RATE);
	} else {
		fill(out, rate, true, debt + cost * rate->interval_ns, 0, SLUICE_REASON_NONE);
	}
}

/* The tie rank of caller scope s (0 for all when no rank is set). */
static uint32_t tie_rank(const struct sluice_redis *r, size_t s)
{
	return r->tie_ranked && s < SLUICE_REDIS_MAX_SCOPES ? r->tie_rank[s] : 0;
}

/* Least remaining, then the shorter reset (limiter.c's govern()), then the
 * lower tie rank of the scope (sluice__redis_set_tie_rank(); engine.c's
 * lower policy index), then the first. */
static void govern(const struct sluice_redis *r, const struct prepared *p,
		   const struct sluice_decision *d, size_t n, struct sluice_decision *out)
{
	size_t best = 0;

	for (size_t i = 1; i < n; i++)
		if (d[i].remaining < d[best].remaining ||
		    (d[i].remaining == d[best].remaining &&
		     (d[i].reset_ns < d[best].reset_ns ||
		      (d[i].reset_ns == d[best].reset_ns &&
		       tie_rank(r, p->caller_scope[p->scope[i]]) <
			       tie_rank(r, p->caller_scope[p->scope[best]])))))
			best = i;
	*out = d[best];
	out->limit_index = (uint32_t)best;
}

/* The `limit` a fresh limit of any kind reports. */
static uint64_t limit_value(const struct sluice_limit *l)
{
	switch (l->kind) {
	case SLUICE_LIMIT_GCRA:
		return l->rate.limit;
	case SLUICE_LIMIT_SLIDING_LOG:
		return l->log.limit;
	case SLUICE_LIMIT_SLIDING_COUNTER:
		return l->counter.limit;
	case SLUICE_LIMIT_CALENDAR:
		return l->calendar.limit;
	default:
		return l->slots.slots;
	}
}

static void fill_degraded(struct sluice_redis *r, const struct prepared *p, struct sluice_decision *out)
{
	bool open = r->fail_mode == SLUICE_FAIL_OPEN;

	memset(out, 0, sizeof *out);
	out->allowed = open || p->req->cost == 0;
	out->degraded = true;
	out->reason = out->allowed ? SLUICE_REASON_NONE : SLUICE_REASON_CAPACITY;
	out->limit = limit_value(&p->req->scopes[0].limits[0]);
	r->st.degraded++;
}

static void count(struct sluice_redis *r, const struct prepared *p, const struct sluice_decision *d)
{
	if (p->req->cost == 0)
		return; /* peeks are not admissions */
	if (d->allowed)
		r->st.admitted++;
	else
		r->st.denied++;
}

/* ---- the deny cache ---- */

static uint64_t cache_now(const struct sluice_redis *r, uint64_t now_ns)
{
	return (r->flags & SLUICE_REDIS_CALLER_CLOCK) ? now_ns : sluice_monotonic_ns();
}

/* The deny cache is two-way set associative: a tag lives in either slot of
 * the even/odd pair its low bits pick (one slot when the cache has one), so
 * two limits of one request never evict each other (direct-mapped, they did
 * in 1 of 64 handles of a 64-slot cache, and the cache then never answered
 * for that key). */
static struct deny_slot *cache_set(struct sluice_redis *r, uint64_t tag)
{
	return &r->cache[tag & r->cache_mask & ~(uint64_t)1];
}

static struct deny_slot *cache_find(struct sluice_redis *r, uint64_t tag)
{
	struct deny_slot *s = cache_set(r, tag);
	if (s[0].tag == tag)
		return &s[0];
	return r->cache_mask != 0 && s[1].tag == tag ? &s[1] : NULL;
}

/* The slot for tag: its own, else an empty one of its pair, else the one
 * useful for the shorter time (the earlier until_ns), evicted. */
static struct deny_slot *cache_slot(struct sluice_redis *r, uint64_t tag)
{
	struct deny_slot *s = cache_find(r, tag);
	if (s == NULL) {
		struct deny_slot *set = cache_set(r, tag);
		s = &set[0];
		if (r->cache_mask != 0 && set[0].tag != 0 &&
		    (set[1].tag == 0 || set[1].until_ns < set[0].until_ns))
			s = &set[1];
	}
	return s;
}

/* GCRA: record that F >= tat_ns for tag (both are lower bounds of the
 * server's F, so the larger one is kept). */
static void cache_note(struct sluice_redis *r, uint64_t tag, uint64_t tat_ns)
{
	struct deny_slot *s = cache_find(r, tag);
	if (s != NULL && s->until_ns >= tat_ns)
		return;
	s = cache_slot(r, tag);
	*s = (struct deny_slot){ .tag = tag, .until_ns = tat_ns };
}

/* Calendar: record the cell's word as the server held it after this
 * call, whose window ends at until_ns (cache clock); calendar time =
 * cache time + offset_ns. The latest reply is the latest state (a handle's
 * calls run one after another), so it replaces the entry. */
static void cache_note_calendar(struct sluice_redis *r, uint64_t tag, uint64_t word, uint64_t until_ns,
				uint64_t offset_ns)
{
	struct deny_slot *s = cache_slot(r, tag);
	*s = (struct deny_slot){ .tag = tag, .until_ns = until_ns, .word = word, .offset_ns = offset_ns };
}

/* Try to deny p locally at time t. True with *out filled on a hit: some
 * limit j denies on its cached state, and every limit before j has a cached
 * state that admits (so j is the first denier the server would find on the
 * same state). GCRA: the cached F. Calendar: the cached word, judged by the
 * cell itself at calendar time t + offset_ns while t is before the end of
 * its window (within it the server's count only grows). */
static bool cache_try_deny(struct sluice_redis *r, const struct prepared *p, uint64_t t,
			   struct sluice_decision *out)
{
	uint64_t cost = p->req->cost;

	if (!p->all_cacheable)
		return false; /* sliding and slot kinds: not cached (docs/redis.md) */
	for (size_t j = 0; j < p->nlimits; j++) {
		const struct deny_slot *s = cache_find(r, p->tag[j]);
		if (s == NULL)
			return false;
		if (p->limit[j]->kind == SLUICE_LIMIT_CALENDAR) {
			const struct sluice_calendar_config *cfg = &p->limit[j]->calendar;
			/* cost > limit: NEVER, the server's answer. A window
			 * that has ended holds nothing we know. */
			if (cost > cfg->limit || t >= s->until_ns)
				return false;
			struct sluice_calendar c;
			/* relaxed: a private copy of the cached state, never shared. */
			atomic_store_explicit(&c.word, s->word, memory_order_relaxed); /* relaxed: why above */
			if (sluice_calendar_admit(&c, cfg, t + s->offset_ns, cost, out))
				continue; /* admits on its cached state */
			if (out->reason != SLUICE_REASON_QUOTA || out->reset_ns == SLUICE_NEVER)
				return false; /* the end of the clock: the server's */
			out->limit_index = p->base[p->scope[j]] + p->index[j];
			r->st.cache_hits++;
			return true;
		}
		const struct sluice_rate *rate = &p->limit[j]->rate;
		if (cost > rate->burst)
			return false;
		uint64_t debt = s->until_ns > t ? s->until_ns - t : 0;
		uint64_t slack = rate->tolerance_ns - cost * rate->interval_ns;
		if (debt > slack) {
			/* The server's horizon rule could answer NEVER for an F
			 * near 2^64; leave that rare case to the server. */
			if (s->until_ns > UINT64_MAX - 2 - rate->tolerance_ns)
				return false;
			decide_limit(out, rate, ST_RATE, debt, cost);
			out->limit_index = p->base[p->scope[j]] + p->index[j];
			r->st.cache_hits++;
			return true;
		}
	}
	return false;
}

/* ---- the local lease ---- */

/*
 * A hot request shape (the same keys and limits, seen lease_hot_hits times
 * within one lease_ttl_ns by this handle) takes a lease: the request is sent
 * with cost = the lease's units L (all-or-nothing with every limit and scope,
 * as any request), the caller gets its cost c, and the other L - c units are
 * kept here; later requests of the shape are answered from them without a
 * round trip while they last and the lease is younger than lease_ttl_ns.
 * Unused units are dropped, never returned to the server. The fleet-wide
 * bound and the meaning of a leased answer's fields: docs/redis.md,
 * "Local lease".
 *
 * Which requests lease (lease_eligible()): admissions (cost > 0, mode
 * admit) whose limits are all GCRA and whose keys are on one hash slot.
 * The bound is derived for GCRA's F alone: a window or slots limit would
 * need its own (a calendar window spent by a lease stays spent until the
 * window turns), and a slot cannot be held for a caller that has not
 * asked yet. A cross-slot request's groups are reserved and may be
 * cancelled, and a cancel cannot give back units a lease handed out. So
 * every other request (window and slot kinds, cross-slot groups,
 * acquires, peeks) neither counts towards heat, nor is answered from a
 * lease, nor takes one: it is a round trip (or a deny-cache hit), exactly
 * as without a lease. Its keys may be those of a leased shape: the
 * server's state already holds the lease's units, so its answer stays
 * exact.
 */

static bool lease_eligible(const struct sluice_redis *r, const struct prepared *p)
{
	return r->lease != NULL && p->req->cost > 0 && p->mode == MODE_ADMIT && p->all_gcra &&
	       !p->cross && p->handles == NULL;
}

/* The shape of a request: its keys and limits in order (the deny-cache
 * tags hash each (key, limit index, interval, depth); their sequence
 * names the request's keys and limits). A 64-bit hash, as for the deny
 * cache: two shapes share a lease only on a hash collision. */
static uint64_t lease_sig(const struct prepared *p)
{
	uint64_t h = XXH3_64bits_withSeed(p->tag, p->nlimits * sizeof p->tag[0], p->req->nscopes);
	return h != 0 ? h : 1;
}

/* Count a request (cost > 0) towards its shape's heat, and answer it from
 * the shape's lease if that holds enough units and is live at t (lease
 * clock = the deny cache's). True with *out filled on a leased answer. */
static bool lease_answer(struct sluice_redis *r, struct prepared *p, uint64_t t, struct sluice_decision *out)
{
	uint64_t cost = p->req->cost;
	uint64_t sig = lease_sig(p);
	struct lease *l = &r->lease[sig & r->lease_mask];

	p->lease_sig = sig;
	if (l->sig != sig) {
		/* Never during a take: admit_prepared() matches every request
		 * of a call to its entry before it marks any take. */
		r->st.lease_wasted += l->left;
		memset(l, 0, sizeof *l);
		l->sig = sig;
		l->heat_start_ns = t;
	}
	if (t < l->heat_start_ns || t - l->heat_start_ns >= r->lease_ttl_ns) {
		l->heat_start_ns = t;
		l->hits = 0;
	}
	if (l->hits < UINT32_MAX)
		l->hits++;
	if (l->left > 0 && t >= l->start_ns && t - l->start_ns >= r->lease_ttl_ns) {
		r->st.lease_wasted += l->left; /* expired */
		l->left = 0;
	}
	/* t < start: the caller's clock went back before the lease; answering
	 * then would break the bound (an admission before its consumption). */
	if (l->left < cost || t < l->start_ns)
		return false;
	l->left -= cost;
	out->allowed = true;
	out->degraded = false;
	out->reason = SLUICE_REASON_NONE;
	out->reserved_ = 0;
	out->limit_index = l->gov_index;
	out->limit = l->gov_limit;
	out->remaining = l->left; /* only what we hold: the server's share is unknown */
	out->reset_ns = l->gov_tat_ns > t ? l->gov_tat_ns - t : 0;
	out->retry_after_ns = 0;
	r->st.leased++;
	return true;
}

/* If p's shape is hot and has no take in this call, turn p into a lease
 * take: req points to a copy with cost = the lease's units, capped by the
 * smallest burst of its limits (a lease that some limit could never grant
 * would deny every time); no take if that is not more than p's own cost. */
static void lease_mark_take(struct sluice_redis *r, struct prepared *p)
{
	struct lease *l = &r->lease[p->lease_sig & r->lease_mask];
	uint64_t units = r->lease_units;

	if (l->sig != p->lease_sig || l->taking || l->hits < r->lease_hot_hits)
		return;
	for (size_t j = 0; j < p->nlimits; j++)
		if (p->limit[j]->rate.burst < units)
			units = p->limit[j]->rate.burst;
	if (units <= p->req->cost)
		return;
	l->taking = true;
	p->lease = l;
	p->orig = p->req;
	p->take = *p->req;
	p->take.cost = units;
	p->req = &p->take;
}

/*
 * After the exchange: turn each take's answer (a decision for L units) into
 * the answer for the caller's cost c, and install the lease. Allowed: the
 * lease holds L - c units from t (the time before the take was sent), and
 * the answer's remaining counts them (exact at the server's moment: its
 * remaining after L, plus what we hold). Denied at limit j with debt d: if
 * c would be denied at j too (d > tau - c*T; the limits before j admitted
 * L >= c, so j is also c's first denier), that is c's exact answer;
 * otherwise c might fit where L did not, and the request is sent again
 * with cost c (returns true). Degraded answers stay as they are.
 */
static bool lease_finish(struct sluice_redis *r, struct prepared *ps, size_t n, uint64_t t,
			 struct sluice_decision *out)
{
	bool resend = false;

	for (size_t i = 0; i < n; i++) {
		struct prepared *p = &ps[i];
		struct lease *l = p->lease;
		if (l == NULL)
			continue;
		uint64_t units = p->take.cost, cost = p->orig->cost;
		p->req = p->orig;
		p->lease = NULL;
		l->taking = false;
		struct sluice_decision *d = &out[i];
		if (!p->done || d->degraded)
			continue;
		if (d->allowed) {
			r->st.lease_grants++;
			r->st.lease_wasted += l->left; /* superseded */
			l->left = units - cost;
			l->start_ns = t;
			l->gov_index = d->limit_index;
			l->gov_limit = d->limit;
			l->gov_tat_ns = sluice__add_sat(t, d->reset_ns);
			d->remaining += units - cost;
			continue;
		}
		/* The denier's flat index in the caller's terms (decode());
		 * with one slot and GCRA only that is its place j in p too,
		 * but look it up rather than rely on it. */
		uint32_t index = d->limit_index;
		size_t j = 0;
		while (j < p->nlimits && p->base[p->scope[j]] + p->index[j] != index)
			j++;
		const struct sluice_rate *rate = j < p->nlimits ? &p->limit[j]->rate : NULL;
		if (rate != NULL && d->reason == SLUICE_REASON_RATE &&
		    d->reset_ns > rate->tolerance_ns - cost * rate->interval_ns) {
			decide_limit(d, rate, ST_RATE, d->reset_ns, cost);
			d->limit_index = index;
			continue;
		}
		r->st.denied--; /* counted by count(); the resend counts again */
		p->done = false;
		resend = true;
	}
	return resend;
}

/* ---- cluster hash slots ---- */

/* CRC16-CCITT (XModem), the hash of Redis Cluster's key slots. */
static uint16_t crc16(const char *p, size_t n)
{
	uint16_t crc = 0;

	for (size_t i = 0; i < n; i++) {
		crc ^= (uint16_t)((uint8_t)p[i] << 8);
		for (int b = 0; b < 8; b++)
			crc = (uint16_t)(crc & 0x8000 ? (crc << 1) ^ 0x1021 : crc << 1);
	}
	return crc;
}

/* The slot of a key: of the part inside the first {...} if that is not
 * empty, else of the whole key (the Redis Cluster specification). */
static uint32_t key_slot(const char *k, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (k[i] == '{') {
			for (size_t j = i + 1; j < n; j++) {
				if (k[j] == '}') {
					if (j > i + 1)
						return crc16(k + i + 1, j - i - 1) & (CLUSTER_SLOTS - 1);
					break;
				}
			}
			break;
		}
	}
	return crc16(k, n) & (CLUSTER_SLOTS - 1);
}

/* ---- validation and argument building ---- */

/* Largest window (sliding counter, calendar) and slot lease on this
 * backend: as SLUICE_REDIS_MAX_TOLERANCE_NS, so that every duration in the
 * script is exact in a double. */
#define MAX_WINDOW_NS SLUICE_REDIS_MAX_TOLERANCE_NS

/* Validate one limit for this backend. */
static int check_limit(const struct sluice_redis *r, const struct sluice_limit *l)
{
	if (sluice__limit_ops_of(l->kind) == NULL || sluice__limit_validate(l) != SLUICE_OK)
		return SLUICE_EINVAL;
	switch (l->kind) {
	case SLUICE_LIMIT_SLIDING_LOG:
		return l->log.limit > SLUICE_REDIS_MAX_LOG_LIMIT || l->log.window_ns > MAX_WINDOW_NS
			       ? SLUICE_ERANGE
			       : SLUICE_OK;
	case SLUICE_LIMIT_GCRA:
		return l->rate.tolerance_ns > SLUICE_REDIS_MAX_TOLERANCE_NS ? SLUICE_ERANGE : SLUICE_OK;
	case SLUICE_LIMIT_SLIDING_COUNTER:
	case SLUICE_LIMIT_CALENDAR: {
		uint64_t w = l->kind == SLUICE_LIMIT_CALENDAR ? l->calendar.window_ns : l->counter.window_ns;
		/* With the server's clock the script divides TIME (whole us) by
		 * the window: it must be whole microseconds. */
		if (w > MAX_WINDOW_NS || (!(r->flags & SLUICE_REDIS_CALLER_CLOCK) && w % 1000 != 0))
			return SLUICE_ERANGE;
		return SLUICE_OK;
	}
	default:
		return l->slots.lease_ttl_ns > MAX_WINDOW_NS ? SLUICE_ERANGE : SLUICE_OK;
	}
}

static int prepare(struct sluice_redis *r, const struct sluice_redis_request *req, struct prepared *p)
{
	if (req->scopes == NULL || req->nscopes == 0)
		return SLUICE_EINVAL;
	if (req->nscopes > SLUICE_REDIS_MAX_SCOPES)
		return SLUICE_ETOOBIG;
	p->req = req;
	p->nlimits = 0;
	p->slot = 0;
	p->mode = req->cost > 0 ? MODE_ADMIT : MODE_PEEK;
	p->all_gcra = p->all_cacheable = true;
	p->has_slots = p->cross = p->done = p->sent = false;
	p->reply = NULL;
	p->handles = NULL;
	for (size_t s = 0; s < req->nscopes; s++) {
		const struct sluice_redis_scope *sc = &req->scopes[s];
		if (sc->key == NULL || sc->key_len > SLUICE_LIMITER_MAX_KEY)
			return SLUICE_EKEY;
		if (sc->limits == NULL || sc->nlimits == 0)
			return SLUICE_EINVAL;
		for (size_t q = 0; q < s; q++)
			if (req->scopes[q].key_len == sc->key_len &&
			    memcmp(req->scopes[q].key, sc->key, sc->key_len) == 0)
				return SLUICE_EINVAL;
		if (sc->nlimits > SLUICE_REDIS_MAX_LIMITS - p->nlimits)
			return SLUICE_ETOOBIG;
		if (r->slot_node != NULL) {
			/* Cluster: a request whose keys hash to several slots
			 * runs the cross-slot protocol (admit_cross()). */
			memcpy(r->buf, r->prefix, r->prefix_len);
			memcpy(r->buf + r->prefix_len, sc->key, sc->key_len);
			uint32_t slot = key_slot(r->buf, r->prefix_len + sc->key_len);
			if (s == 0)
				p->slot = slot;
			else if (slot != p->slot)
				p->cross = true;
		}
		p->base[s] = (uint32_t)p->nlimits;
		p->caller_scope[s] = (uint8_t)s;
		size_t first_gcra = sc->nlimits, nslots = 0;
		for (size_t i = 0; i < sc->nlimits; i++) {
			const struct sluice_limit *l = &sc->limits[i];
			int rc = check_limit(r, l);
			if (rc != SLUICE_OK)
				return rc;
			if (l->kind == SLUICE_LIMIT_SLIDING_LOG && r->log_cell == NULL) {
				/* Scratch for rebuilding a log from the server's
				 * state (decide_state()), the largest allowed. */
				struct sluice_window_log_config c;
				sluice_window_log_config_init(&c, SLUICE_REDIS_MAX_LOG_LIMIT, 1);
				r->log_cell = malloc(sluice_window_log_size(&c));
				if (r->log_cell == NULL)
					return SLUICE_ENOMEM;
			}
			if (l->kind == SLUICE_LIMIT_GCRA && first_gcra == sc->nlimits)
				first_gcra = i;
			nslots += l->kind == SLUICE_LIMIT_SLOTS;
			p->all_gcra &= l->kind == SLUICE_LIMIT_GCRA;
			p->all_cacheable &= l->kind == SLUICE_LIMIT_GCRA || l->kind == SLUICE_LIMIT_CALENDAR;
		}
		if (nslots > 1)
			return SLUICE_EINVAL; /* as the keyed limiter: one slots limit per policy */
		p->has_slots |= nslots > 0;
		uint64_t key_hash = XXH3_64bits_withSeed(sc->key, sc->key_len, r->cache_seed);
		/* The limiter's order: the first GCRA limit (its commit cell),
		 * then the others as given. */
		for (size_t n = 0; n < sc->nlimits; n++) {
			size_t i = first_gcra == sc->nlimits ? n : n == 0 ? first_gcra : n <= first_gcra ? n - 1 : n;
			const struct sluice_limit *l = &sc->limits[i];
			uint64_t tag = 1;
			if (l->kind == SLUICE_LIMIT_GCRA) {
				uint64_t id[3] = { i, l->rate.interval_ns, l->rate.tolerance_ns };
				tag = XXH3_64bits_withSeed(id, sizeof id, key_hash);
			} else if (l->kind == SLUICE_LIMIT_CALENDAR) {
				/* As its field "k<i>:<limit>:<W>": a changed limit is
				 * another entry. Bit 63 keeps it apart from GCRA's. */
				uint64_t id[3] = { (uint64_t)1 << 63 | i, l->calendar.limit, l->calendar.window_ns };
				tag = XXH3_64bits_withSeed(id, sizeof id, key_hash);
			}
			p->tag[p->nlimits] = tag != 0 ? tag : 1;
			p->index[p->nlimits] = (uint16_t)i;
			p->scope[p->nlimits] = (uint8_t)s;
			p->limit[p->nlimits++] = l;
		}
	}
	return SLUICE_OK;
}

/* Append "<letter><i>:<a>:<b>" (GCRA: no letter) at f; returns its length. */
static size_t field_name(char *f, char letter, uint64_t i, uint64_t a, uint64_t b)
{
	size_t n = 0;
	if (letter != 0)
		f[n++] = letter;
	n += sluice__u64_to_dec(f + n, i);
	f[n++] = ':';
	n += sluice__u64_to_dec(f + n, a);
	f[n++] = ':';
	n += sluice__u64_to_dec(f + n, b);
	return n;
}

/* Fill r->argv for p; returns argc. r->buf is large enough by construction
 * (create sizes it for the largest request). */
static int build_args(struct sluice_redis *r, const struct prepared *p, uint64_t now_ns)
{
	const struct sluice_redis_request *req = p->req;
	bool caller_clock = (r->flags & SLUICE_REDIS_CALLER_CLOCK) != 0;
	uint64_t cost = req->cost;
	char *w = r->buf;
	int argc = 0;

#define ARG(ptr, len) (r->argv[argc] = (ptr), r->argvlen[argc] = (len), argc++)
#define NUM(v) (ARG(w, sluice__u64_to_dec(w, (v))), w += NUM_MAX)
	ARG("EVALSHA", 7);
	ARG(r->sha, 40);
	NUM(req->nscopes);
	for (size_t s = 0; s < req->nscopes; s++) {
		memcpy(w, r->prefix, r->prefix_len);
		memcpy(w + r->prefix_len, req->scopes[s].key, req->scopes[s].key_len);
		ARG(w, r->prefix_len + req->scopes[s].key_len);
		w += r->prefix_len + req->scopes[s].key_len;
	}
	if (caller_clock)
		NUM(now_ns);
	else
		ARG("", 0);
	ARG(&p->mode, 1);
	ARG(r->grace, r->grace_len);
	NUM(r->slots_tag);
	size_t j = 0;
	for (size_t s = 0; s < req->nscopes; s++) {
		NUM(req->scopes[s].nlimits);
		for (; j < p->nlimits && p->scope[j] == s; j++) {
			const struct sluice_limit *l = p->limit[j];
			uint64_t i = p->index[j];
			switch (l->kind) {
			case SLUICE_LIMIT_GCRA: {
				const struct sluice_rate *rate = &l->rate;
				ARG("g", 1);
				ARG(w, field_name(w, 0, i, rate->interval_ns, rate->tolerance_ns));
				w += FIELD_MAX;
				if (cost > rate->burst) {
					ARG("-1", 2);
					NUM(rate->tolerance_ns);
				} else {
					NUM(cost * rate->interval_ns);
					NUM(rate->tolerance_ns - cost * rate->interval_ns);
				}
				break;
			}
			case SLUICE_LIMIT_SLIDING_COUNTER:
			case SLUICE_LIMIT_CALENDAR: {
				bool cal = l->kind == SLUICE_LIMIT_CALENDAR;
				uint64_t lim = cal ? l->calendar.limit : l->counter.limit;
				uint64_t win = cal ? l->calendar.window_ns : l->counter.window_ns;
				ARG(cal ? "k" : "c", 1);
				ARG(w, field_name(w, cal ? 'k' : 'c', i, lim, win));
				w += FIELD_MAX;
				if (caller_clock) /* window index mod the cell's index field */
					NUM(now_ns / win & (cal ? UINT64_C(0xffffffff) : UINT64_C(0xffffff)));
				else
					ARG("", 0);
				if (cost > lim)
					ARG("-1", 2);
				else
					NUM(cost);
				NUM(lim);
				NUM(win);
				if (caller_clock)
					NUM(now_ns % win);
				else
					ARG("", 0);
				break;
			}
			case SLUICE_LIMIT_SLIDING_LOG: {
				const struct sluice_window_log_config *c = &l->log;
				ARG("l", 1);
				ARG(w, field_name(w, 'l', i, c->limit, c->window_ns));
				w += FIELD_MAX;
				if (cost > c->limit)
					ARG("-1", 2);
				else
					NUM(cost);
				NUM(c->limit);
				NUM(c->window_ns);
				if (!caller_clock) /* the script subtracts W from TIME */
					ARG("", 0);
				else if (now_ns < c->window_ns) /* nothing has left any window */
					ARG("-", 1);
				else
					NUM(now_ns - c->window_ns);
				break;
			}
			default: {
				const struct sluice_slots_config *c = &l->slots;
				ARG("s", 1);
				ARG(w, field_name(w, 's', i, c->slots, c->lease_ttl_ns));
				w += FIELD_MAX;
				NUM(c->slots);
				NUM(c->lease_ttl_ns);
				break;
			}
			}
		}
	}
#undef NUM
#undef ARG
	return argc;
}

static size_t buf_size_for(size_t prefix_len)
{
	return NUM_MAX * 3 + SLUICE_REDIS_MAX_SCOPES * (prefix_len + SLUICE_LIMITER_MAX_KEY + NUM_MAX) +
	       SLUICE_REDIS_MAX_LIMITS * (FIELD_MAX + NUMS_PER_LIMIT * NUM_MAX) +
	       4 * (SLUICE_REDIS_MAX_LIMITS + SLUICE_REDIS_MAX_SCOPES) * NUM_MAX;
}

/* ---- connection ---- */

static void drop(struct node *nd)
{
	if (nd->ctx != NULL) {
		redisFree(nd->ctx);
		nd->ctx = NULL;
	}
	nd->ever_worked = false;
}

static void schedule_retry(struct sluice_redis *r, struct node *nd)
{
	nd->next_attempt_ns = sluice__add_sat(sluice_monotonic_ns(), nd->backoff_ns);
	nd->backoff_ns = nd->backoff_ns > r->backoff_max_ns / 2 ? r->backoff_max_ns : nd->backoff_ns * 2;
}

/* Set the socket timeout to the time left; false (dropped) if none is. */
static bool arm_timeout(struct sluice_redis *r, struct node *nd, uint64_t deadline_ns)
{
	uint64_t left = time_left(deadline_ns);
	if (left == 0 || redisSetTimeout(nd->ctx, tv_of(left)) != REDIS_OK) {
		r->st.timeouts += left == 0;
		drop(nd);
		return false;
	}
	return true;
}

/* SCRIPT LOAD on nd's connection. 0, or -1 (connection dropped). */
static int load_script(struct sluice_redis *r, struct node *nd, uint64_t deadline_ns)
{
	if (!arm_timeout(r, nd, deadline_ns))
		return -1;
	r->st.script_loads++;
	r->st.round_trips++;
	const char *argv[3] = { "SCRIPT", "LOAD", script_text };
	size_t argvlen[3] = { 6, 4, sizeof script_text - 1 };
	redisReply *rep = redisCommandArgv(nd->ctx, 3, argv, argvlen);
	if (rep == NULL) {
		r->st.io_errors++;
		r->st.timeouts += time_left(deadline_ns) == 0;
		drop(nd);
		return -1;
	}
	int rc = -1;
	if (rep->type == REDIS_REPLY_STRING && rep->len == 40) {
		/* The SHA1 of the script: the same on every node. */
		memcpy(r->sha, rep->str, 40);
		r->sha[40] = '\0';
		rc = 0;
	} else {
		r->st.server_errors++;
		drop(nd);
	}
	freeReplyObject(rep);
	return rc;
}

static void refresh_slots(struct sluice_redis *r, struct node *nd, uint64_t deadline_ns);

/* Make sure nd has a connection with the script loaded. 0, or -1 (fail
 * mode: down, in backoff, or out of time). */
static int ensure_connected(struct sluice_redis *r, struct node *nd, uint64_t deadline_ns)
{
	if (nd->ctx != NULL)
		return 0;
	if (sluice_monotonic_ns() < nd->next_attempt_ns) {
		r->st.backoff_skips++;
		return -1;
	}
	uint64_t left = time_left(deadline_ns);
	if (left == 0) {
		r->st.timeouts++;
		return -1;
	}
	nd->ctx = redisConnectWithTimeout(nd->host, nd->port, tv_of(left));
	if (nd->ctx == NULL || nd->ctx->err != 0) {
		r->st.connect_failures++;
		drop(nd);
		schedule_retry(r, nd);
		return -1;
	}
	if (load_script(r, nd, deadline_ns) != 0) {
		r->st.connect_failures++;
		schedule_retry(r, nd);
		return -1;
	}
	r->st.connects++;
	nd->backoff_ns = r->backoff_min_ns;
	nd->next_attempt_ns = 0;
	if (r->slot_node != NULL && nd == &r->nodes[0])
		refresh_slots(r, nd, deadline_ns);
	/* refresh_slots() drops the connection if its reply is lost or
	 * unreadable (fuzz/corpus/redis/regress_cluster_slots_drop). */
	return nd->ctx != NULL ? 0 : -1;
}

/* ---- cluster ---- */

/* The node for host:port, added if new; -1 if the table is full. */
static int node_for(struct sluice_redis *r, const char *host, size_t host_len, long long port)
{
	if (host_len == 0 || host_len >= HOST_MAX || port <= 0 || port > 65535)
		return -1;
	for (uint32_t i = 0; i < r->nnodes; i++)
		if (r->nodes[i].port == port && strlen(r->nodes[i].host) == host_len &&
		    memcmp(r->nodes[i].host, host, host_len) == 0)
			return (int)i;
	if (r->nnodes == MAX_NODES)
		return -1;
	struct node *nd = &r->nodes[r->nnodes];
	memset(nd, 0, sizeof *nd);
	memcpy(nd->host, host, host_len);
	nd->host[host_len] = '\0';
	nd->port = (int)port;
	nd->backoff_ns = r->backoff_min_ns;
	return (int)r->nnodes++;
}

/* Learn the whole slot map from nd (CLUSTER SLOTS). Best effort: a failure
 * leaves the map as it was (MOVED replies still correct it slot by slot). */
static void refresh_slots(struct sluice_redis *r, struct node *nd, uint64_t deadline_ns)
{
	if (!arm_timeout(r, nd, deadline_ns))
		return;
	r->st.round_trips++;
	redisReply *rep = redisCommand(nd->ctx, "CLUSTER SLOTS");
	if (rep == NULL) {
		r->st.io_errors++;
		drop(nd);
		return;
	}
	if (rep->type == REDIS_REPLY_ARRAY) {
		for (size_t i = 0; i < rep->elements; i++) {
			const redisReply *e = rep->element[i];
			if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
			    e->element[0]->type != REDIS_REPLY_INTEGER ||
			    e->element[1]->type != REDIS_REPLY_INTEGER ||
			    e->element[2]->type != REDIS_REPLY_ARRAY || e->element[2]->elements < 2 ||
			    e->element[2]->element[0]->type != REDIS_REPLY_STRING ||
			    e->element[2]->element[1]->type != REDIS_REPLY_INTEGER)
				continue;
			long long lo = e->element[0]->integer, hi = e->element[1]->integer;
			const redisReply *m = e->element[2];
			int ni = node_for(r, m->element[0]->str, m->element[0]->len, m->element[1]->integer);
			if (ni < 0 || lo < 0 || hi >= CLUSTER_SLOTS || lo > hi)
				continue;
			memset(r->slot_node + lo, ni, (size_t)(hi - lo + 1));
		}
	}
	freeReplyObject(rep);
}

/* A redirection "<word> <slot> <host>:<port>" (MOVED or ASK), the word
 * and its space being `skip` bytes: the node it names (added if new) and
 * *slot, or -1 if malformed or the node table is full. */
static int parse_redirect(struct sluice_redis *r, const redisReply *rep, size_t skip, uint32_t *slot)
{
	const char *s = rep->str + skip, *end = rep->str + rep->len;
	long long sl = 0, port = 0;

	if (s == end || *s < '0' || *s > '9')
		return -1;
	while (s < end && *s >= '0' && *s <= '9' && sl < CLUSTER_SLOTS)
		sl = sl * 10 + (*s++ - '0');
	if (s >= end || *s++ != ' ' || sl >= CLUSTER_SLOTS)
		return -1;
	const char *colon = NULL;
	for (const char *q = s; q < end; q++)
		if (*q == ':')
			colon = q;
	if (colon == NULL || colon + 1 == end)
		return -1;
	for (const char *q = colon + 1; q < end && port <= 65535; q++) {
		if (*q < '0' || *q > '9')
			return -1;
		port = port * 10 + (*q - '0');
	}
	*slot = (uint32_t)sl;
	return node_for(r, s, (size_t)(colon - s), port);
}

/* "MOVED <slot> <host>:<port>": point the slot at that node. */
static bool learn_moved(struct sluice_redis *r, const redisReply *rep)
{
	uint32_t slot;
	int ni = parse_redirect(r, rep, 6, &slot);
	if (ni < 0)
		return false;
	r->slot_node[slot] = (uint8_t)ni;
	return true;
}

static uint32_t node_of(const struct sluice_redis *r, const struct prepared *p)
{
	return r->slot_node != NULL ? r->slot_node[p->slot] : 0;
}

/* ---- replies ---- */

static bool reply_is_error(const redisReply *rep, const char *prefix)
{
	size_t n = strlen(prefix);
	return rep->type == REDIS_REPLY_ERROR && rep->len >= n && memcmp(rep->str, prefix, n) == 0;
}

static bool int_elem(const redisReply *rep, size_t i, long long lo, long long hi, long long *v)
{
	if (i >= rep->elements || rep->element[i]->type != REDIS_REPLY_INTEGER)
		return false;
	*v = rep->element[i]->integer;
	return *v >= lo && *v <= hi;
}

/* The debt pair (s, ns) at elements i, i+1 as ns; false if malformed. */
static bool debt_elem(const redisReply *rep, size_t i, uint64_t *debt)
{
	long long s, ns;
	if (!int_elem(rep, i, 0, (long long)(UINT64_MAX / SLUICE_NS_PER_SEC), &s) ||
	    !int_elem(rep, i + 1, 0, (long long)SLUICE_NS_PER_SEC - 1, &ns))
		return false;
	sluice__u128 d = (sluice__u128)(uint64_t)s * SLUICE_NS_PER_SEC + (uint64_t)ns;
	if (d > UINT64_MAX)
		return false;
	*debt = (uint64_t)d;
	return true;
}

/* One limit's decision from its state as the script reported it (4
 * integers at rep->element[e]), computed by the cell's own code on a
 * private copy of that state, so that it is exactly the keyed limiter's.
 * what: 'd' the dry-run denial, 'a' the admission, 'p' the peek (*ok: the
 * limiter's dry run passes). False if the state is malformed or does not
 * give the verdict the script gave. */
static bool decide_state(struct sluice_redis *r, struct prepared *p, size_t j, const redisReply *rep,
			 size_t e, int status, uint64_t now, uint64_t t, char what,
			 struct sluice_decision *d, bool *ok)
{
	const struct sluice_limit *l = p->limit[j];
	uint64_t cost = what == 'p' ? 0 : p->req->cost;
	long long x0, x1, x2, x3;

	*ok = true;
	switch (l->kind) {
	case SLUICE_LIMIT_GCRA: {
		const struct sluice_rate *rate = &l->rate;
		uint64_t debt;
		if (!debt_elem(rep, e, &debt))
			return false;
		if (what == 'p') {
			fill(d, rate, true, debt, 0, SLUICE_REASON_NONE);
			return true;
		}
		bool fits = cost <= rate->burst && debt <= rate->tolerance_ns - cost * rate->interval_ns;
		if (what == 'd') {
			/* RATE only for cost <= burst (else the script says
			 * NEVER): retry_after = debt - slack needs slack >= 0
			 * (fuzz/corpus/redis/regress_rate_cost_above_burst). */
			if (status == ST_RATE && (fits || cost > rate->burst))
				return false;
			decide_limit(d, rate, status, debt, cost);
			if (r->cache != NULL && status == ST_RATE)
				cache_note(r, p->tag[j], sluice__add_sat(t, debt));
			return true;
		}
		if (!fits)
			return false;
		decide_limit(d, rate, ST_OK, debt, cost);
		/* A reservation may be cancelled (F lowered again): only final
		 * admissions are lower bounds of F. */
		if (r->cache != NULL && p->mode != MODE_RESERVE)
			cache_note(r, p->tag[j], sluice__add_sat(t, d->reset_ns));
		return true;
	}
	case SLUICE_LIMIT_SLIDING_COUNTER: {
		if (!int_elem(rep, e, -1, 0xffffff, &x0) || !int_elem(rep, e + 1, 0, 0xfffff, &x1) ||
		    !int_elem(rep, e + 2, x0 < 0 ? 0 : 1, x0 < 0 ? 0 : 0xfffff, &x2))
			return false;
		struct sluice_window_counter c;
		uint64_t word = x0 < 0 ? 0 : (uint64_t)x0 << 40 | (uint64_t)x1 << 20 | (uint64_t)x2;
		/* relaxed: a private copy of the server's state, never shared. */
		atomic_store_explicit(&c.word, word, memory_order_relaxed); /* relaxed: why above */
		bool got = sluice_window_counter_admit(&c, &l->counter, now, cost, d);
		return what == 'd' ? !got : got;
	}
	case SLUICE_LIMIT_CALENDAR: {
		if (!int_elem(rep, e, -1, 0xffffffffLL, &x0) ||
		    !int_elem(rep, e + 1, x0 < 0 ? 0 : 1, x0 < 0 ? 0 : 0xffffffffLL, &x1))
			return false;
		struct sluice_calendar c;
		uint64_t word = x0 < 0 ? 0 : (uint64_t)x0 << 32 | (uint64_t)x1;
		/* relaxed: a private copy of the server's state, never shared. */
		atomic_store_explicit(&c.word, word, memory_order_relaxed); /* relaxed: why above */
		bool got = sluice_calendar_admit(&c, &l->calendar, now, cost, d);
		if (got != (what != 'd'))
			return false;
		/* The state the server holds after this call: the word as read
		 * (a denial writes nothing) or as the admission wrote it. Not
		 * a reservation's (a cancel may lower it again), not a peek's. */
		if (r->cache != NULL && (what == 'd' || (what == 'a' && p->mode != MODE_RESERVE)))
			/* relaxed: the private copy above. */
			cache_note_calendar(r, p->tag[j],
					    atomic_load_explicit(&c.word, memory_order_relaxed), /* relaxed: why above */
					    sluice__add_sat(t, d->reset_ns), now - t);
		return true;
	}
	case SLUICE_LIMIT_SLIDING_LOG: {
		/* Rebuild the log: admitting its m <= limit times one unit each,
		 * in order, records exactly them (each sees fewer than limit
		 * live units); only the last `limit` units of a log decide. */
		const struct sluice_window_log_config *cfg = &l->log;
		if (e >= rep->elements || rep->element[e]->type != REDIS_REPLY_STRING)
			return false;
		const char *q = rep->element[e]->str, *end = q + rep->element[e]->len;
		uint64_t m = 0, prev = 0;
		sluice_window_log_init(r->log_cell, cfg);
		while (q < end) {
			uint64_t v = 0;
			size_t digits = 0;
			for (; q < end && *q >= '0' && *q <= '9'; q++, digits++) {
				if (v > (UINT64_MAX - 9) / 10)
					return false;
				v = v * 10 + (uint64_t)(*q - '0');
			}
			if (digits == 0 || v < prev || ++m > cfg->limit ||
			    !sluice_window_log_admit(r->log_cell, cfg, v, 1, NULL))
				return false;
			prev = v;
			if (q < end && *q++ != ' ')
				return false;
		}
		bool got = sluice_window_log_admit(r->log_cell, cfg, now, cost, d);
		return what == 'd' ? !got : got;
	}
	default: {
		const struct sluice_slots_config *cfg = &l->slots;
		if (!int_elem(rep, e, 0, (long long)cfg->slots, &x0))
			return false;
		uint64_t n = (uint64_t)x0;
		bool allowed = what == 'a' || (what == 'p' && n < cfg->slots);
		if (what == 'a') {
			if (!int_elem(rep, e + 1, 1, (1LL << 28) - 1, &x1) ||
			    !int_elem(rep, e + 2, 0, (long long)cfg->slots - 1, &x2) ||
			    !int_elem(rep, e + 3, 0, (1LL << 24) - 1, &x3))
				return false;
			if (n < cfg->slots)
				n++; /* a free slot taken; n == N: an expired lease taken over */
			if (p->handles != NULL)
				p->handles[p->caller_scope[p->scope[j]]] =
					(uint64_t)x3 << 40 | (uint64_t)x1 << 12 | (uint64_t)x2;
		}
		/* slots.c's fill(). */
		*d = (struct sluice_decision){
			.allowed = allowed,
			.reason = allowed ? SLUICE_REASON_NONE : SLUICE_REASON_CONCURRENCY,
			.limit = cfg->slots,
			.remaining = n >= cfg->slots ? 0 : cfg->slots - n,
			.reset_ns = allowed ? 0 : cfg->retry_after_ns,
			.retry_after_ns = allowed ? 0 : cfg->retry_after_ns,
		};
		/* A peek is an allowed decision whatever the slots hold
		 * (limit_kind.c's slots_check()): reason NONE, no retry-after,
		 * reset_ns the hint when full. */
		if (what == 'p') {
			d->allowed = true;
			d->reason = SLUICE_REASON_NONE;
			d->retry_after_ns = 0;
			return true;
		}
		/* The limiter's dry run lets a full cell with leases pass (its
		 * acquire may take over an expired lease). */
		*ok = allowed || cfg->lease_ttl_ns != 0;
		return true;
	}
	}
}

/* Turn a script answer into the decision. False if malformed. t is the
 * request's time in the cache's clock (for noting F). */
static bool decode(struct sluice_redis *r, struct prepared *p, const redisReply *rep, uint64_t t,
		   uint64_t now_ns, struct sluice_decision *out)
{
	long long status, index, now_s, now_sub;
	bool ok;

	if (rep->type != REDIS_REPLY_ARRAY || !int_elem(rep, 0, ST_OK, ST_NEVER, &status) ||
	    !int_elem(rep, 2, 0, (long long)(UINT64_MAX / SLUICE_NS_PER_SEC), &now_s) ||
	    !int_elem(rep, 3, 0, (long long)SLUICE_NS_PER_SEC - 1, &now_sub))
		return false;
	sluice__u128 server_now = (sluice__u128)(uint64_t)now_s * SLUICE_NS_PER_SEC + (uint64_t)now_sub;
	if (server_now > UINT64_MAX)
		return false;
	uint64_t now = (r->flags & SLUICE_REDIS_CALLER_CLOCK) ? now_ns : (uint64_t)server_now;
	if (status != ST_OK) {
		if (rep->elements != 8 || p->mode == MODE_PEEK ||
		    !int_elem(rep, 1, 0, (long long)p->nlimits - 1, &index) ||
		    (status == ST_NEVER && p->limit[index]->kind != SLUICE_LIMIT_GCRA) ||
		    !decide_state(r, p, (size_t)index, rep, 4, (int)status, now, t, 'd', out, &ok))
			return false;
		out->limit_index = p->base[p->scope[index]] + p->index[index];
		return true;
	}
	size_t main = 4 + 4 * p->nlimits;
	if (rep->elements < main || !int_elem(rep, 1, -1, -1, &index) ||
	    (p->mode == MODE_RESERVE ? (rep->elements - main) % 4 != 0 : rep->elements != main))
		return false;
	struct sluice_decision d[SLUICE_REDIS_MAX_LIMITS];
	char what = p->mode == MODE_PEEK ? 'p' : 'a';
	/* An admission or a peek: every limit answers (no kind denies a peek,
	 * and the script admitted), and the governing rule picks. */
	for (size_t j = 0; j < p->nlimits; j++)
		if (!decide_state(r, p, j, rep, 4 + 4 * j, ST_OK, now, t, what, &d[j], &ok) || !ok)
			return false;
	govern(r, p, d, p->nlimits, out);
	size_t best = out->limit_index;
	out->limit_index = p->base[p->scope[best]] + p->index[best];
	out->allowed = true;
	return true;
}

/* ---- the exchange ---- */

/*
 * ASK (cluster, a slot being migrated): the node that owns the slot does not
 * have the request's keys any more, or not yet all of them; the node it
 * names (importing the slot) decides this one request if it is preceded by
 * ASKING. Both go in one pipeline: one round trip. The slot map is not
 * changed (the slot still belongs to the old node until the migration ends;
 * then MOVED re-points it). Done once: a second ASK, an error or a lost
 * connection ends in the fail mode; MOVED or NOSCRIPT from the asked node
 * leave the request pending for the caller's next round (*again set), and
 * TRYAGAIN (some keys of a multi-key request are on each side) for the round
 * after the pause (p->tryagain; the owner is asked again). A reserve (a group of
 * a cross-slot request) keeps its reply for the receipts, as in
 * exchange(); its cancel, and a release, follow ASK in call_script().
 */

/* ASKING, then the call in r->argv[0..argc-1], pipelined on nd's connection
 * (armed by the caller): one round trip. Returns the call's reply, or NULL:
 * the connection failed (dropped) or ASKING was refused (a server error). */
static redisReply *asking_call(struct sluice_redis *r, struct node *nd, int argc, uint64_t deadline_ns)
{
	static const char asking[] = "ASKING";
	const char *asking_argv[1] = { asking };
	size_t asking_len[1] = { sizeof asking - 1 };

	if (redisAppendCommandArgv(nd->ctx, 1, asking_argv, asking_len) != REDIS_OK ||
	    redisAppendCommandArgv(nd->ctx, argc, r->argv, r->argvlen) != REDIS_OK) {
		drop(nd);
		return NULL;
	}
	r->st.round_trips++;
	redisReply *ok = NULL, *rep = NULL;
	if (redisGetReply(nd->ctx, (void **)&ok) != REDIS_OK || ok == NULL ||
	    redisGetReply(nd->ctx, (void **)&rep) != REDIS_OK || rep == NULL) {
		if (ok != NULL)
			freeReplyObject(ok);
		r->st.io_errors++;
		r->st.timeouts += time_left(deadline_ns) == 0;
		drop(nd);
		return NULL;
	}
	nd->ever_worked = true;
	bool asked = ok->type == REDIS_REPLY_STATUS && ok->len == 2 && memcmp(ok->str, "OK", 2) == 0;
	freeReplyObject(ok);
	if (!asked) {
		r->st.server_errors++;
		freeReplyObject(rep);
		return NULL;
	}
	return rep;
}

static void ask_one(struct sluice_redis *r, struct prepared *p, uint64_t now_ns, uint64_t t,
		    struct sluice_decision *out, uint64_t deadline_ns, bool *again)
{
	struct node *nd = &r->nodes[p->ask_node];

	p->ask_node = -1;
	if (ensure_connected(r, nd, deadline_ns) != 0 || !arm_timeout(r, nd, deadline_ns))
		goto degraded;
	int argc = build_args(r, p, now_ns);
	redisReply *rep = asking_call(r, nd, argc, deadline_ns);
	if (rep == NULL)
		goto degraded;
	if (reply_is_error(rep, "NOSCRIPT")) {
		r->st.noscript++;
		if (load_script(r, nd, deadline_ns) == 0)
			*again = true;
	} else if (reply_is_error(rep, "MOVED ") && learn_moved(r, rep)) {
		r->st.moved++;
		*again = true;
	} else if (reply_is_error(rep, "TRYAGAIN")) {
		r->st.tryagain++; /* did not run: resent after the pause */
		p->tryagain = true;
	} else if (decode(r, p, rep, t, now_ns, out)) {
		p->done = true;
		count(r, p, out);
		if (p->mode == MODE_RESERVE) { /* keep the receipts, as exchange() */
			p->reply = rep;
			rep = NULL;
		}
	} else {
		if (rep->type == REDIS_REPLY_ERROR && strstr(rep->str, "READONLY") != NULL)
			r->st.readonly++;
		else
			r->st.server_errors++;
		p->done = true;
		fill_degraded(r, p, out);
	}
	freeReplyObject(rep);
	if (p->done || *again || p->tryagain)
		return;
degraded:
	p->done = true;
	fill_degraded(r, p, out);
}

/*
 * Decide every prepared request not yet done that belongs to node ni:
 * pipeline their script calls on its connection, read the replies in order.
 * Up to three passes: a NOSCRIPT reloads the script and resends those
 * requests; a connection that had been working and breaks (not by timeout)
 * is re-established once. A MOVED reply (cluster) re-points the slot and
 * leaves the request pending for the caller's next round (*moved set); a
 * TRYAGAIN (from nd or the asked node) leaves it pending with p->tryagain
 * set, not sent again until rounds() has paused.
 */
static void exchange(struct sluice_redis *r, uint32_t ni, struct prepared *ps, size_t n,
		     uint64_t now_ns, struct sluice_decision *out, uint64_t deadline_ns, bool *moved)
{
	struct node *nd = &r->nodes[ni];
	uint64_t t = cache_now(r, now_ns);
	bool reconnected = false;

	for (int pass = 0; pass < 3; pass++) {
		bool pending = false;
		for (size_t i = 0; i < n; i++)
			pending |= !ps[i].done && !ps[i].tryagain && node_of(r, &ps[i]) == ni;
		if (!pending || ensure_connected(r, nd, deadline_ns) != 0)
			break;
		if (!arm_timeout(r, nd, deadline_ns))
			break;
		bool ok = true;
		for (size_t i = 0; i < n && ok; i++) {
			ps[i].sent = false;
			if (ps[i].done || ps[i].tryagain || node_of(r, &ps[i]) != ni)
				continue;
			int argc = build_args(r, &ps[i], now_ns);
			if (redisAppendCommandArgv(nd->ctx, argc, r->argv, r->argvlen) != REDIS_OK) {
				ok = false;
			} else {
				ps[i].sent = true;
				ps[i].ask_node = -1;
			}
		}
		if (!ok) { /* out of memory in hiredis' output buffer */
			drop(nd);
			break;
		}
		r->st.round_trips++;
		bool noscript = false, broken = false, asked = false;
		for (size_t i = 0; i < n; i++) {
			if (!ps[i].sent)
				continue;
			redisReply *rep = NULL;
			if (redisGetReply(nd->ctx, (void **)&rep) != REDIS_OK || rep == NULL) {
				broken = true;
				break;
			}
			if (reply_is_error(rep, "NOSCRIPT")) {
				r->st.noscript++;
				noscript = true;
			} else if (r->slot_node != NULL && reply_is_error(rep, "MOVED ") &&
				   learn_moved(r, rep)) {
				r->st.moved++;
				*moved = true;
			} else if (r->slot_node != NULL && reply_is_error(rep, "ASK ") &&
				   (ps[i].ask_node = parse_redirect(r, rep, 4, &(uint32_t){ 0 })) >= 0) {
				r->st.ask++;
				asked = true;
			} else if (r->slot_node != NULL && reply_is_error(rep, "TRYAGAIN")) {
				r->st.tryagain++; /* did not run: resent after the pause */
				ps[i].tryagain = true;
			} else if (decode(r, &ps[i], rep, t, now_ns, &out[i])) {
				ps[i].done = true;
				count(r, &ps[i], &out[i]);
				if (ps[i].mode == MODE_RESERVE) { /* keep the receipts */
					ps[i].reply = rep;
					rep = NULL;
				}
			} else {
				if (rep->type == REDIS_REPLY_ERROR && strstr(rep->str, "READONLY") != NULL)
					r->st.readonly++;
				else
					r->st.server_errors++;
				ps[i].done = true;
				fill_degraded(r, &ps[i], &out[i]);
			}
			freeReplyObject(rep);
		}
		if (broken) {
			bool timed_out = time_left(deadline_ns) == 0;
			bool worked = nd->ever_worked;
			r->st.io_errors++;
			r->st.timeouts += timed_out;
			drop(nd);
			if (timed_out || !worked || reconnected)
				break;
			reconnected = true; /* a restart: try a fresh connection now */
			continue;
		}
		nd->ever_worked = true;
		/* After every reply of nd's pipeline is read: nd's connection
		 * is idle while the asked nodes are used. */
		for (size_t i = 0; asked && i < n; i++)
			if (ps[i].sent && !ps[i].done && ps[i].ask_node >= 0)
				ask_one(r, &ps[i], now_ns, t, &out[i], deadline_ns, moved);
		if (noscript && load_script(r, nd, deadline_ns) != 0)
			break;
	}
}

/* ---- public API ---- */

/* One round per node that has requests; in cluster mode, more rounds
 * while MOVED replies re-point slots (at most 3 redirections), and while
 * requests answered TRYAGAIN: after each such round a pause
 * (tryagain_pause()), then those requests are sent again, from the start
 * (their slot's owner, which may ask again); the deadline bounds these
 * retries, and they do not count as redirections. A TRYAGAIN reply means
 * the script did not run, so a resend never consumes twice. A round that
 * runs only for TRYAGAIN resends nothing else: a request left pending by a
 * failure (a lost connection, whose call may have run) answers by the fail
 * mode, as it would without the TRYAGAIN. Requests still pending at the
 * end answer by the fail mode too (admit_prepared()). */
static void rounds(struct sluice_redis *r, struct prepared *ps, size_t n, uint64_t now_ns,
		   struct sluice_decision *out, uint64_t deadline)
{
	uint64_t pause_ns = TRYAGAIN_PAUSE_MIN_NS;

	for (int redirections = 0;;) {
		bool moved = false, tryagain = false;
		for (uint32_t ni = 0; ni < r->nnodes; ni++)
			exchange(r, ni, ps, n, now_ns, out, deadline, &moved);
		for (size_t i = 0; i < n; i++)
			tryagain |= !ps[i].done && ps[i].tryagain;
		bool redirected = moved && redirections++ < 3;
		if (!tryagain) {
			if (!redirected)
				break;
			continue;
		}
		if (!redirected) {
			for (size_t i = 0; i < n; i++) {
				if (!ps[i].done && !ps[i].tryagain) {
					ps[i].done = true;
					fill_degraded(r, &ps[i], &out[i]);
				}
			}
		}
		if (!tryagain_pause(r, deadline, &pause_ns))
			break;
		for (size_t i = 0; i < n; i++)
			ps[i].tryagain = false;
	}
	for (size_t i = 0; i < n; i++)
		ps[i].tryagain = false;
}

static int admit_prepared(struct sluice_redis *r, struct prepared *ps, size_t n, uint64_t now_ns,
			  struct sluice_decision *out)
{
	/* A cross-slot request's reserves share its deadline. */
	uint64_t deadline = r->call_deadline_ns != 0 ? r->call_deadline_ns
						     : sluice__add_sat(sluice_monotonic_ns(), r->timeout_ns);
	/* The lease clock (the deny cache's), read before anything is sent. */
	uint64_t lease_t = r->lease != NULL ? cache_now(r, now_ns) : 0;

	for (size_t i = 0; i < n; i++) {
		ps[i].lease = NULL;
		ps[i].ask_node = -1;
		ps[i].tryagain = false;
		if (lease_eligible(r, &ps[i]) && lease_answer(r, &ps[i], lease_t, &out[i])) {
			ps[i].done = true;
			count(r, &ps[i], &out[i]);
		}
	}
	if (r->cache != NULL) {
		uint64_t t = cache_now(r, now_ns);
		for (size_t i = 0; i < n; i++) {
			if (!ps[i].done && ps[i].req->cost > 0 && cache_try_deny(r, &ps[i], t, &out[i])) {
				ps[i].done = true;
				count(r, &ps[i], &out[i]);
			}
		}
	}
	bool pending = false;
	for (size_t i = 0; i < n; i++) {
		if (ps[i].done)
			continue;
		pending = true;
		if (lease_eligible(r, &ps[i]))
			lease_mark_take(r, &ps[i]);
	}
	/* Answered locally (lease, deny cache): no I/O, so no signal mask
	 * syscalls either. */
	if (pending) {
		struct sigpipe_guard guard;
		sigpipe_block(&guard);
		rounds(r, ps, n, now_ns, out, deadline);
		if (r->lease != NULL && lease_finish(r, ps, n, lease_t, out))
			rounds(r, ps, n, now_ns, out, deadline);
		sigpipe_restore(&guard);
	}
	for (size_t i = 0; i < n; i++) {
		if (!ps[i].done) {
			ps[i].done = true;
			fill_degraded(r, &ps[i], &out[i]);
		}
	}
	return SLUICE_OK;
}

/* One script call routed by hash slot, outside the pipelined exchange:
 * cancels and releases. Handles NOSCRIPT (reload, resend), MOVED (re-point,
 * resend), ASK (the next attempt is ASKING + the call on the node it names,
 * the map unchanged, as ask_one()) and a lost connection that had been
 * working (reconnect once). TRYAGAIN (the keys of a multi-key call split by
 * a migration; the script did not run) pauses (tryagain_pause()) and starts
 * the call again from the slot's owner, while the deadline allows. An ASK
 * from the asked node ends the call: NULL.
 * r->argv[0..argc-1] must be set, argv[1] the script's SHA. Returns the
 * reply (the caller frees it) or NULL (fail mode: down, out of time, the
 * keys not reachable in one place). */
static redisReply *call_script(struct sluice_redis *r, uint32_t slot, int argc, uint64_t deadline_ns)
{
	bool reconnected = false;
	int ask = -1; /* the node the last ASK named: the next attempt's */
	uint64_t pause_ns = TRYAGAIN_PAUSE_MIN_NS;

	for (int attempt = 0; attempt < 5; attempt++) {
		bool via_ask = ask >= 0;
		uint32_t ni = via_ask ? (uint32_t)ask : r->slot_node != NULL ? r->slot_node[slot] : 0;
		struct node *nd = &r->nodes[ni];
		ask = -1;
		if (ensure_connected(r, nd, deadline_ns) != 0 || !arm_timeout(r, nd, deadline_ns))
			return NULL;
		redisReply *rep;
		if (via_ask) {
			rep = asking_call(r, nd, argc, deadline_ns);
			if (rep == NULL)
				return NULL; /* counted there */
		} else {
			r->st.round_trips++;
			rep = redisCommandArgv(nd->ctx, argc, r->argv, r->argvlen);
		}
		if (rep == NULL) {
			bool timed_out = time_left(deadline_ns) == 0, worked = nd->ever_worked;
			r->st.io_errors++;
			r->st.timeouts += timed_out;
			drop(nd);
			if (timed_out || !worked || reconnected)
				return NULL;
			reconnected = true;
			continue;
		}
		nd->ever_worked = true;
		if (reply_is_error(rep, "NOSCRIPT")) {
			r->st.noscript++;
			freeReplyObject(rep);
			if (load_script(r, nd, deadline_ns) != 0)
				return NULL;
			if (via_ask)
				ask = (int)ni; /* the owner would only ask again */
			continue;
		}
		if (r->slot_node != NULL && reply_is_error(rep, "MOVED ") && learn_moved(r, rep)) {
			r->st.moved++;
			freeReplyObject(rep);
			continue;
		}
		if (r->slot_node != NULL && !via_ask && reply_is_error(rep, "ASK ") &&
		    (ask = parse_redirect(r, rep, 4, &(uint32_t){ 0 })) >= 0) {
			r->st.ask++;
			freeReplyObject(rep);
			continue;
		}
		if (r->slot_node != NULL && reply_is_error(rep, "TRYAGAIN")) {
			r->st.tryagain++;
			freeReplyObject(rep);
			if (!tryagain_pause(r, deadline_ns, &pause_ns))
				return NULL;
			attempt = -1; /* afresh; the deadline bounds the retries (pause >= 1 ms) */
			continue;
		}
		if (reply_is_error(rep, "ASK ")) {
			r->st.server_errors++;
			freeReplyObject(rep);
			return NULL;
		}
		return rep;
	}
	return NULL;
}

/* Argument prefix of a script call on p's keys: EVALSHA sha n keys now mode
 * grace tag. Returns argc; *w: where the scratch continues. */
static int head_args(struct sluice_redis *r, const struct prepared *p, uint64_t now_ns, const char *mode,
		     char **w)
{
	int argc = 0;
	char *b = r->buf;

#define ARG(ptr, len) (r->argv[argc] = (ptr), r->argvlen[argc] = (len), argc++)
	ARG("EVALSHA", 7);
	ARG(r->sha, 40);
	ARG(b, sluice__u64_to_dec(b, p->req->nscopes));
	b += NUM_MAX;
	for (size_t s = 0; s < p->req->nscopes; s++) {
		memcpy(b, r->prefix, r->prefix_len);
		memcpy(b + r->prefix_len, p->req->scopes[s].key, p->req->scopes[s].key_len);
		ARG(b, r->prefix_len + p->req->scopes[s].key_len);
		b += r->prefix_len + p->req->scopes[s].key_len;
	}
	if (r->flags & SLUICE_REDIS_CALLER_CLOCK) {
		ARG(b, sluice__u64_to_dec(b, now_ns));
		b += NUM_MAX;
	} else {
		ARG("", 0);
	}
	ARG(mode, 1);
	ARG(r->grace, r->grace_len);
	ARG("0", 1);
#undef ARG
	*w = b;
	return argc;
}

/* Undo a reserved group (cross-slot protocol): every field it wrote gets
 * its value before back if it still holds the value we wrote; a field
 * something else wrote since keeps it (consumption stays: conservative).
 * An unreachable node leaves the reservation in place (conservative too).
 * Frees the kept reply. */
static void cancel_group(struct sluice_redis *r, struct prepared *p, uint64_t now_ns, uint64_t deadline_ns)
{
	redisReply *rep = p->reply;
	char *w;

	p->reply = NULL;
	if (rep == NULL)
		return;
	if (rep->elements <= 4 + 4 * p->nlimits) { /* a denial: wrote nothing */
		freeReplyObject(rep);
		return;
	}
	int argc = head_args(r, p, now_ns, "c", &w);
	for (size_t e = 4 + 4 * p->nlimits; e + 3 < rep->elements; e += 4) {
		long long key;
		if (!int_elem(rep, e, 1, (long long)p->req->nscopes, &key) ||
		    rep->element[e + 1]->type != REDIS_REPLY_STRING ||
		    rep->element[e + 2]->type != REDIS_REPLY_STRING ||
		    rep->element[e + 3]->type != REDIS_REPLY_STRING || argc + 4 > MAX_ARGS) {
			r->st.server_errors++;
			freeReplyObject(rep);
			return;
		}
		r->argv[argc] = w;
		r->argvlen[argc++] = sluice__u64_to_dec(w, (uint64_t)key);
		w += NUM_MAX;
		for (int k = 1; k <= 3; k++) {
			r->argv[argc] = rep->element[e + (size_t)k]->str;
			r->argvlen[argc++] = rep->element[e + (size_t)k]->len;
		}
	}
	redisReply *got = call_script(r, p->slot, argc, deadline_ns);
	if (got != NULL && got->type != REDIS_REPLY_INTEGER)
		r->st.server_errors++;
	freeReplyObject(got);
	freeReplyObject(rep);
}

/* The caller scope of a flat limit index of `whole`. */
static size_t scope_of(const struct prepared *whole, uint32_t flat)
{
	size_t s = 0;
	while (s + 1 < whole->req->nscopes && whole->base[s + 1] <= flat)
		s++;
	return s;
}

/* The better of two governing decisions (govern(): least remaining, then
 * the shorter reset, then the lower tie rank, ties to the first). */
static bool governs_over(const struct sluice_redis *r, const struct prepared *whole,
			 const struct sluice_decision *a, const struct sluice_decision *b)
{
	return a->remaining < b->remaining ||
	       (a->remaining == b->remaining &&
		(a->reset_ns < b->reset_ns ||
		 (a->reset_ns == b->reset_ns && tie_rank(r, scope_of(whole, a->limit_index)) <
							tie_rank(r, scope_of(whole, b->limit_index)))));
}

/*
 * A request whose keys hash to several cluster slots (docs/redis.md,
 * "Scopes on different slots"): the scopes are grouped by slot and the
 * groups visited in ascending slot order (scopes of a group in the
 * caller's order). Each group is reserved all-or-nothing by one script call
 * that also returns its receipt; at the first group that denies (or fails),
 * the groups already reserved are cancelled in reverse order. The decision
 * is the one of the visiting order: the first denier, else the least
 * remaining of all limits.
 */
static int admit_cross(struct sluice_redis *r, const struct prepared *whole, uint64_t now_ns,
		       struct sluice_decision *out, sluice_slot_handle *handles)
{
	const struct sluice_redis_request *req = whole->req;
	size_t ns = req->nscopes, ng = 0;
	uint32_t slot[SLUICE_REDIS_MAX_SCOPES], order[SLUICE_REDIS_MAX_SCOPES];
	struct group *g = r->groups;

	for (size_t s = 0; s < ns; s++) {
		memcpy(r->buf, r->prefix, r->prefix_len);
		memcpy(r->buf + r->prefix_len, req->scopes[s].key, req->scopes[s].key_len);
		slot[s] = key_slot(r->buf, r->prefix_len + req->scopes[s].key_len);
		size_t q = s; /* insertion sort by (slot, index): stable */
		for (; q > 0 && slot[order[q - 1]] > slot[s]; q--)
			order[q] = order[q - 1];
		order[q] = (uint32_t)s;
	}
	for (size_t q = 0; q < ns; q++) {
		uint32_t s = order[q];
		if (q == 0 || slot[s] != slot[order[q - 1]]) {
			g[ng].req = (struct sluice_redis_request){ g[ng].sc, 0, req->cost };
			ng++;
		}
		struct group *gr = &g[ng - 1];
		gr->sc[gr->req.nscopes] = req->scopes[s];
		gr->p.caller_scope[gr->req.nscopes] = (uint8_t)s; /* kept through prepare() below */
		gr->req.nscopes++;
	}

	struct sluice_decision best, d;
	size_t done = 0;
	bool denied = false;
	uint64_t deadline = sluice__add_sat(sluice_monotonic_ns(), r->timeout_ns);
	for (; done < ng; done++) {
		struct group *gr = &g[done];
		uint8_t caller[SLUICE_REDIS_MAX_SCOPES];
		memcpy(caller, gr->p.caller_scope, sizeof caller);
		if (prepare(r, &gr->req, &gr->p) != SLUICE_OK) /* validated as a whole already */
			return SLUICE_EINVAL;
		for (size_t s = 0; s < gr->req.nscopes; s++) {
			gr->p.caller_scope[s] = caller[s];
			gr->p.base[s] = whole->base[caller[s]];
		}
		gr->p.cross = false;
		gr->p.mode = req->cost > 0 ? MODE_RESERVE : MODE_PEEK;
		gr->p.handles = handles;
		r->call_deadline_ns = deadline;
		admit_prepared(r, &gr->p, 1, now_ns, &d);
		r->call_deadline_ns = 0;
		/* admit_prepared() counted the group's verdict; count the request
		 * once, below. */
		if (d.degraded)
			r->st.degraded--;
		else if (req->cost > 0) {
			if (d.allowed)
				r->st.admitted--;
			else
				r->st.denied--;
		}
		if (d.degraded || !d.allowed) {
			denied = true;
			break;
		}
		if (done == 0 || governs_over(r, whole, &d, &best))
			best = d;
	}
	if (denied) {
		if (req->cost > 0) {
			/* The cancels get their own timeout: a group that timed
			 * out must not leave the others' reservations behind. */
			deadline = sluice__add_sat(sluice_monotonic_ns(), r->timeout_ns);
			struct sigpipe_guard guard;
			sigpipe_block(&guard);
			cancel_group(r, &g[done].p, now_ns, deadline); /* a degraded reserve may have run */
			while (done-- > 0)
				cancel_group(r, &g[done].p, now_ns, deadline);
			sigpipe_restore(&guard);
			if (handles != NULL)
				for (size_t s = 0; s < ns; s++)
					handles[s] = SLUICE_SLOT_NONE;
		}
		*out = d;
		if (d.degraded) {
			struct prepared tmp = *whole;
			fill_degraded(r, &tmp, out);
		}
	} else {
		for (size_t q = 0; q < ng; q++)
			if (g[q].p.reply != NULL) {
				freeReplyObject(g[q].p.reply);
				g[q].p.reply = NULL;
			}
		*out = best;
	}
	if (req->cost > 0 && !out->degraded) {
		if (out->allowed)
			r->st.admitted++;
		else
			r->st.denied++;
	}
	return SLUICE_OK;
}

/* admit_scopes and acquire_scopes. */
static int admit_one(struct sluice_redis *r, const struct sluice_redis_scope *scopes, size_t nscopes,
		     uint64_t cost, uint64_t now_ns, struct sluice_decision *out,
		     sluice_slot_handle *handles)
{
	if (r == NULL || out == NULL)
		return SLUICE_EINVAL;
	struct sluice_redis_request req = { scopes, nscopes, cost };
	struct prepared p;
	int rc = prepare(r, &req, &p);
	if (rc != SLUICE_OK)
		return rc;
	if (p.has_slots && cost > 0 && handles == NULL)
		return SLUICE_EINVAL; /* as sluice_limiter_admit(): slot policies are acquired */
	if (handles != NULL)
		for (size_t s = 0; s < nscopes; s++)
			handles[s] = SLUICE_SLOT_NONE;
	/* Scope s creates a slots state with tag slots_tag + s (mod 2^24 - 1,
	 * never 0): a fresh tag per state, as a cell's init draws one. */
	r->slots_tag = r->next_tag;
	r->next_tag = (r->next_tag - 1 + nscopes) % 0xffffff + 1;
	if (p.cross)
		return admit_cross(r, &p, now_ns, out, handles);
	p.handles = cost > 0 ? handles : NULL;
	return admit_prepared(r, &p, 1, now_ns, out);
}

int sluice_redis_admit_scopes(struct sluice_redis *r, const struct sluice_redis_scope *scopes,
			      size_t nscopes, uint64_t cost, uint64_t now_ns, struct sluice_decision *out)
{
	return admit_one(r, scopes, nscopes, cost, now_ns, out, NULL);
}

int sluice_redis_acquire_scopes(struct sluice_redis *r, const struct sluice_redis_scope *scopes,
				size_t nscopes, uint64_t cost, uint64_t now_ns, struct sluice_decision *out,
				sluice_slot_handle *handles)
{
	if (handles == NULL)
		return SLUICE_EINVAL;
	for (size_t s = 0; s < nscopes && s < SLUICE_REDIS_MAX_SCOPES; s++)
		handles[s] = SLUICE_SLOT_NONE;
	return admit_one(r, scopes, nscopes, cost, now_ns, out, handles);
}

int sluice_redis_release(struct sluice_redis *r, const struct sluice_redis_scope *scope,
			 sluice_slot_handle handle)
{
	if (r == NULL || scope == NULL)
		return SLUICE_EINVAL;
	struct sluice_redis_request req = { scope, 1, 0 };
	struct prepared p;
	int rc = prepare(r, &req, &p);
	if (rc != SLUICE_OK)
		return rc;
	size_t j = 0;
	while (j < p.nlimits && p.limit[j]->kind != SLUICE_LIMIT_SLOTS)
		j++;
	if (j == p.nlimits)
		return SLUICE_EINVAL; /* the policy has no slots */
	const struct sluice_slots_config *cfg = &p.limit[j]->slots;
	uint64_t index = handle & 0xfff, gen = handle >> 12 & 0xfffffff, tag = handle >> 40;
	if (index >= cfg->slots || gen == 0) {
		/* Malformed (SLUICE_SLOT_NONE too): ESTALE as
		 * sluice_slots_release(), but only for a key that exists, as
		 * sluice_limiter_release() looks the key up first. Tag 0 is
		 * never a state's (tags are 1 .. 2^24 - 1), so the server
		 * answers 3 (no key) or 2 (stale) and changes nothing. */
		tag = 0;
		gen = 0;
		index = 0;
	}
	char *w;
	int argc = head_args(r, &p, 0, "r", &w);
#define NUM(v) (r->argv[argc] = w, r->argvlen[argc++] = sluice__u64_to_dec(w, (v)), w += NUM_MAX)
	r->argv[argc] = w;
	r->argvlen[argc++] = field_name(w, 's', p.index[j], cfg->slots, cfg->lease_ttl_ns);
	w += FIELD_MAX;
	NUM(cfg->slots);
	NUM(tag);
	NUM(gen);
	NUM(index);
#undef NUM
	uint64_t deadline = sluice__add_sat(sluice_monotonic_ns(), r->timeout_ns);
	struct sigpipe_guard guard;
	sigpipe_block(&guard);
	redisReply *rep = call_script(r, p.slot, argc, deadline);
	sigpipe_restore(&guard);
	if (rep == NULL)
		return SLUICE_EBACKEND;
	static const int codes[4] = { SLUICE_OK, SLUICE_EDOUBLE, SLUICE_ESTALE, SLUICE_ENOTFOUND };
	rc = SLUICE_EPROTO;
	if (rep->type == REDIS_REPLY_INTEGER && rep->integer >= 0 && rep->integer <= 3)
		rc = codes[rep->integer];
	else if (rep->type == REDIS_REPLY_ERROR && strstr(rep->str, "READONLY") != NULL)
		r->st.readonly++, rc = SLUICE_EBACKEND;
	else
		r->st.server_errors++;
	freeReplyObject(rep);
	return rc;
}

void sluice__redis_set_tie_rank(struct sluice_redis *r, const uint32_t *rank, size_t n)
{
	if (r == NULL)
		return;
	r->tie_ranked = rank != NULL;
	for (size_t s = 0; s < SLUICE_REDIS_MAX_SCOPES; s++)
		r->tie_rank[s] = rank != NULL && s < n ? rank[s] : UINT32_MAX;
}

int sluice_redis_admit(struct sluice_redis *r, const void *key, size_t key_len,
		       const struct sluice_limit *limits, size_t nlimits, uint64_t cost, uint64_t now_ns,
		       struct sluice_decision *out)
{
	struct sluice_redis_scope scope = { key, key_len, limits, nlimits };
	return sluice_redis_admit_scopes(r, &scope, 1, cost, now_ns, out);
}

int sluice_redis_admit_batch(struct sluice_redis *r, const struct sluice_redis_request *reqs,
			     size_t n, uint64_t now_ns, struct sluice_decision *out)
{
	if (r == NULL || (n > 0 && (reqs == NULL || out == NULL)))
		return SLUICE_EINVAL;
	if (n == 0)
		return SLUICE_OK;
	if (n > r->prep_cap) {
		if (n > SIZE_MAX / sizeof *r->prep)
			return SLUICE_ENOMEM;
		struct prepared *np = realloc(r->prep, n * sizeof *np);
		if (np == NULL)
			return SLUICE_ENOMEM;
		r->prep = np;
		r->prep_cap = n;
	}
	for (size_t i = 0; i < n; i++) {
		int rc = prepare(r, &reqs[i], &r->prep[i]);
		if (rc != SLUICE_OK)
			return rc;
		if (r->prep[i].has_slots && reqs[i].cost > 0)
			return SLUICE_EINVAL; /* slot policies are acquired */
	}
	/* Runs of single-slot requests are pipelined; a cross-slot request
	 * runs its protocol alone, in its place in the order. */
	for (size_t i = 0; i < n;) {
		size_t j = i;
		while (j < n && !r->prep[j].cross)
			j++;
		if (j > i)
			admit_prepared(r, r->prep + i, j - i, now_ns, out + i);
		if (j < n)
			admit_cross(r, &r->prep[j], now_ns, &out[j], NULL);
		i = j + 1;
	}
	return SLUICE_OK;
}

int sluice_redis_stats(const struct sluice_redis *r, struct sluice_redis_stats *out)
{
	if (r == NULL || out == NULL ||
	    (out->size != SLUICE_REDIS_STATS_V1_SIZE && out->size != SLUICE_REDIS_STATS_V2_SIZE &&
	     out->size < sizeof *out))
		return SLUICE_EINVAL;
	/* A version-1 caller's struct ends before the lease fields, a
	 * version-2 caller's before tryagain. */
	size_t n = out->size < sizeof *out ? out->size : sizeof *out;
	memcpy(out, &r->st, n);
	out->size = n;
	return SLUICE_OK;
}

static char *dup_str(const char *s)
{
	size_t n = strlen(s) + 1;
	char *d = malloc(n);
	if (d != NULL)
		memcpy(d, s, n);
	return d;
}

int sluice_redis_create(struct sluice_redis **out, const struct sluice_redis_options *opts)
{
	struct sluice_redis_options o = { .size = sizeof o };

	if (out == NULL)
		return SLUICE_EINVAL;
	*out = NULL;
	if (opts != NULL) {
		/* Version 1 (no lease fields) or the current one. */
		if (opts->size != SLUICE_REDIS_OPTIONS_V1_SIZE && opts->size < sizeof o)
			return SLUICE_EINVAL;
		memcpy(&o, opts, opts->size < sizeof o ? opts->size : sizeof o);
	}
	const char *host = o.host != NULL ? o.host : "127.0.0.1";
	if (o.fail_mode > SLUICE_FAIL_CLOSED ||
	    (o.flags & ~(SLUICE_REDIS_CALLER_CLOCK | SLUICE_REDIS_CLUSTER)) ||
	    strlen(host) == 0 || strlen(host) >= HOST_MAX ||
	    o.port > 65535 || (o.deny_cache_slots & (o.deny_cache_slots - 1)) != 0 ||
	    o.expiry_grace_ns > SLUICE_REDIS_MAX_TOLERANCE_NS / 2 ||
	    (o.lease_slots & (o.lease_slots - 1)) != 0 || o.lease_reserved_ != 0 ||
	    o.lease_ttl_ns > SLUICE_REDIS_MAX_TOLERANCE_NS)
		return SLUICE_EINVAL;
	if (o.timeout_ns == 0)
		o.timeout_ns = 50 * 1000 * 1000;
	if (o.backoff_min_ns == 0)
		o.backoff_min_ns = 10 * 1000 * 1000;
	if (o.backoff_max_ns == 0)
		o.backoff_max_ns = SLUICE_NS_PER_SEC;
	if (o.backoff_min_ns > o.backoff_max_ns)
		return SLUICE_EINVAL;

	struct sluice_redis *r = calloc(1, sizeof *r);
	if (r == NULL)
		return SLUICE_ENOMEM;
	r->prefix = dup_str(o.key_prefix != NULL ? o.key_prefix : "sluice:");
	if (r->prefix == NULL)
		goto nomem;
	if (o.flags & SLUICE_REDIS_CLUSTER) {
		/* All slots start at node 0; CLUSTER SLOTS and MOVED fill in. */
		r->slot_node = calloc(CLUSTER_SLOTS, 1);
		r->groups = calloc(SLUICE_REDIS_MAX_SCOPES, sizeof *r->groups);
		if (r->slot_node == NULL || r->groups == NULL)
			goto nomem;
	}
	r->prefix_len = strlen(r->prefix);
	r->buf_cap = buf_size_for(r->prefix_len);
	r->buf = malloc(r->buf_cap);
	if (r->buf == NULL)
		goto nomem;
	if (o.deny_cache_slots != 0) {
		r->cache = calloc(o.deny_cache_slots, sizeof *r->cache);
		if (r->cache == NULL)
			goto nomem;
		r->cache_mask = o.deny_cache_slots - 1;
	}
	/* Seeds the tags of the deny cache and of the lease shapes. */
	r->cache_seed = sluice_monotonic_ns() ^ (uint64_t)(uintptr_t)r;
	if (o.lease_units != 0) {
		uint32_t slots = o.lease_slots != 0 ? o.lease_slots : 64;
		r->lease = calloc(slots, sizeof *r->lease);
		if (r->lease == NULL)
			goto nomem;
		r->lease_mask = slots - 1;
		r->lease_units = o.lease_units;
		r->lease_hot_hits = o.lease_hot_hits != 0 ? o.lease_hot_hits : o.lease_units;
		r->lease_ttl_ns = o.lease_ttl_ns != 0 ? o.lease_ttl_ns : 100 * 1000 * 1000;
	}
	memcpy(r->nodes[0].host, host, strlen(host) + 1);
	r->next_tag = (sluice_monotonic_ns() ^ (uint64_t)(uintptr_t)r) % 0xffffff + 1;
	r->slots_tag = r->next_tag;
	r->nodes[0].port = o.port != 0 ? (int)o.port : 6379;
	r->nodes[0].backoff_ns = o.backoff_min_ns;
	r->nnodes = 1;
	r->fail_mode = o.fail_mode;
	r->flags = o.flags;
	r->timeout_ns = o.timeout_ns;
	r->grace_len = sluice__u64_to_dec(r->grace, o.expiry_grace_ns);
	r->backoff_min_ns = o.backoff_min_ns;
	r->backoff_max_ns = o.backoff_max_ns;
	r->st.size = sizeof r->st;

	struct sigpipe_guard guard;
	sigpipe_block(&guard);
	(void)ensure_connected(r, &r->nodes[0], sluice__add_sat(sluice_monotonic_ns(), r->timeout_ns));
	sigpipe_restore(&guard);
	*out = r;
	return SLUICE_OK;
nomem:
	sluice_redis_destroy(r);
	return SLUICE_ENOMEM;
}

void sluice_redis_destroy(struct sluice_redis *r)
{
	if (r == NULL)
		return;
	for (uint32_t i = 0; i < r->nnodes; i++)
		drop(&r->nodes[i]);
	free(r->slot_node);
	free(r->groups);
	free(r->log_cell);
	free(r->prefix);
	free(r->buf);
	free(r->cache);
	free(r->lease);
	free(r->prep);
	free(r);
}

#endif /* SLUICE_WITH_REDIS */
