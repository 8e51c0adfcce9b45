-- limits.lua - the Redis backend's script: every limit of every scope of one
-- request decided and written atomically (docs/redis.md, "The script").
-- Embedded in libsluice at build time (embed_script.cmake makes it a C
-- string; SCRIPT LOAD, then EVALSHA). It runs by hand too:
--   redis-cli --eval src/redis/limits.lua KEYS , ARGV
-- (docs/redis.md, "Running the script by hand").
--
-- KEYS: one hash per scope. ARGV[1]: now in ns ("" = the server's TIME),
-- ARGV[2]: the mode, ARGV[3]: the expiry grace in ns, ARGV[4]: the tag for a
-- slots state created by this call.
--
-- Modes "0" (peek), "1" (admit), "2" (reserve: admit and append receipts):
-- then per scope the number of limits k and k records, each a kind letter
-- and its arguments, in the order C decides them:
--   g field need slack            GCRA (need -1: cost > burst)
--   c field k_mod cost limit W e  sliding counter (k_mod, e "" = from TIME)
--   k field k_mod cost limit W e  calendar (cost -1: cost > limit)
--   s field N lease_ns            slots (lease "0": none)
--   l field cost limit W t-W      sliding log (t-W: "" = from TIME, "-" < 0)
-- Answer: {status, flat index, now_s, now_ns, 4 integers per limit}:
--   allowed: status 0, index -1, the state of every limit before the call
--   denied:  status 1 (2: GCRA never), the denier's index and state only
-- where a state is: g: debt (s, ns); c: k_s (-1 missing), prev, cur;
-- k: k_s (-1 missing), count; s: in_use before, gen, index, tag of the
-- slot taken (0 if none); l: the log (its last `limit` unit times,
-- ascending, space-separated; "" if none) and three zeros. Mode "2"
-- appends, per field written, (key index, field, value before ("" =
-- absent), value after): the receipt.
--
-- Mode "c" (cancel): ARGV[5..] are tuples (key index, field, before,
-- after); each field still holding `after` gets `before` back (HDEL for
-- ""). A slots field written since gets the slot we took released instead
-- (a semaphore's operations commute: exact, as sluice_slots_cancel()).
-- Answer: how many were restored.
-- Mode "r" (release): ARGV[5..9] = field, N, tag, gen, index of a slot
-- handle. Answer 0 released, 1 already released, 2 stale, 3 no such key.
--
-- Expiry: a key gets PEXPIRE to the time until every limit written is full
-- again (plus the grace), never shortened; a key holding a slot without a
-- lease is PERSISTed until its last slot is released, then expires at the
-- time its other limits are full (field "_full", server ms). Needs
-- Redis >= 4.0 (HSET of several fields); on 3.2-4.x replicate_commands()
-- makes TIME before writes legal (effects replication, the only mode since
-- 7.0, where the call is a no-op).
--
-- Exactness (Lua numbers are doubles): src/redis/redis.c's file comment.
local B = 1000000000
local T32 = 4294967296
local NEVER = '18446744073709551615'
local function fdiv(x, d)
  local q = math.floor(x / d)
  while q * d > x do q = q - 1 end
  while (q + 1) * d <= x do q = q + 1 end
  return q
end
local function split(s)
  if not s then return 0, 0 end
  local n = #s
  if n <= 9 then return 0, tonumber(s) end
  return tonumber(string.sub(s, 1, n - 9)), tonumber(string.sub(s, n - 8))
end
local function dec(h, l)
  if h > 0 then return string.format('%d%09d', h, l) end
  return string.format('%d', l)
end
local function dlt(x, y)
  if #x ~= #y then return #x < #y end
  return x < y
end
local function addsat(h, l, d)
  local xl = l + d
  local c = fdiv(xl, B)
  local xh = h + c
  xl = xl - c * B
  if xh > 18446744073 or (xh == 18446744073 and xl > 709551615) then return NEVER end
  return dec(xh, xl)
end
local function mul2(x, m)
  local h = math.floor(x / T32)
  local l = x - h * T32
  local lo = l * m
  local c = math.floor(lo / T32)
  return h * m + c, lo - c * T32
end
local function sparse(v)
  local st = {slot = {}}
  local it = string.gmatch(v, '[^;]+')
  local t, u = string.match(it(), '^(%d+),(%d+)$')
  st.tag, st.n = tonumber(t), tonumber(u)
  for rec in it do
    local i, g, r, ph, d = string.match(rec, '^(%d+),(%d+),(%d+),(%d),(%d+)$')
    st.slot[tonumber(i)] = {g = tonumber(g), r = tonumber(r), ph = tonumber(ph), d = d}
  end
  return st
end
local function sser(st, n)
  local parts = {string.format('%d,%d', st.tag, st.n)}
  for i = 0, n - 1 do
    local s = st.slot[i]
    if s then parts[#parts + 1] = string.format('%d,%d,%d,%d,', i, s.g, s.r, s.ph) .. s.d end
  end
  return table.concat(parts, ';')
end
local function nextgen(g)
  g = (g + 1) % 268435456
  if g == 0 then g = 1 end
  return g
end
local function server_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function settle(key, nowms)
  if redis.call('PTTL', key) ~= -1 then return end
  local all = redis.call('HGETALL', key)
  local full = nil
  for j = 1, #all, 2 do
    local f = all[j]
    if string.sub(f, 1, 1) == 's' and sparse(all[j + 1]).n > 0 then return end
    if f == '_full' then full = tonumber(all[j + 1]) end
  end
  local ms = 1
  if full and full - nowms > ms then ms = full - nowms end
  redis.call('PEXPIRE', key, ms)
end
if redis.replicate_commands then redis.replicate_commands() end
local mode = ARGV[2]
if mode == 'c' then
  local n, touched = 0, {}
  local a = 5
  while a + 3 <= #ARGV do
    local ki = tonumber(ARGV[a])
    local key, f, before, after = KEYS[ki], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
    a = a + 4
    local cur = redis.call('HGET', key, f)
    local over = false
    if cur == after and before ~= '' and string.sub(f, 1, 1) == 's' then
      local x, b = sparse(after), sparse(before)
      for i, y in pairs(x.slot) do
        local o = b.slot[i]
        if y.ph == 2 and o and o.ph == 2 and o.g ~= y.g then over = true end
      end
    end
    if cur == after and not over then
      if before == '' then redis.call('HDEL', key, f) else redis.call('HSET', key, f, before) end
      n = n + 1
      touched[ki] = true
    elseif cur and string.sub(f, 1, 1) == 's' then
      local x, b, c = sparse(after), nil, sparse(cur)
      if before ~= '' then b = sparse(before) end
      local ns = tonumber(string.match(f, '^s%d+:(%d+):'))
      for i, y in pairs(x.slot) do
        local o = b and b.slot[i]
        local z = c.slot[i]
        if y.ph == 2 and (not o or o.g ~= y.g) and c.tag == x.tag and z and z.g == y.g and z.ph == 2 then
          z.ph = 0
          c.n = c.n - 1
          redis.call('HSET', key, f, sser(c, ns))
          n = n + 1
          touched[ki] = true
        end
      end
    end
  end
  local nowms = nil
  for ki, _ in pairs(touched) do
    if redis.call('EXISTS', KEYS[ki]) == 1 then
      nowms = nowms or server_ms()
      settle(KEYS[ki], nowms)
    end
  end
  return n
end
if mode == 'r' then
  local key = KEYS[1]
  if redis.call('EXISTS', key) == 0 then return 3 end
  local v = redis.call('HGET', key, ARGV[5])
  if not v then return 2 end
  local st = sparse(v)
  local n, g, i = tonumber(ARGV[6]), tonumber(ARGV[8]), tonumber(ARGV[9])
  if st.tag ~= tonumber(ARGV[7]) then return 2 end
  local s = st.slot[i]
  if not s or s.g ~= g or s.ph ~= 2 then
    if s and s.r == g then return 2 end
    return 1
  end
  s.ph = 0
  st.n = st.n - 1
  redis.call('HSET', key, ARGV[5], sser(st, n))
  if st.n == 0 then settle(key, server_ms()) end
  return 0
end
local nh, nl
if ARGV[1] == '' then
  local t = redis.call('TIME')
  nh, nl = tonumber(t[1]), tonumber(t[2]) * 1000
else
  nh, nl = split(ARGV[1])
end
local nowstr = dec(nh, nl)
local now_us = nil
local function wpos(p, mod)
  local W = tonumber(ARGV[p + 5])
  local ki, e
  if ARGV[p + 2] == '' then
    now_us = now_us or (nh * 1000000 + fdiv(nl, 1000))
    local wus = W / 1000
    local k = fdiv(now_us, wus)
    ki = k % mod
    e = (now_us - k * wus) * 1000
  else
    ki, e = tonumber(ARGV[p + 2]), tonumber(ARGV[p + 6])
  end
  return ki, W, W - e
end
local write = mode ~= '0'
local grace = tonumber(ARGV[3])
local grace_ms = fdiv(grace + 999999, 1000000)
local tag = tonumber(ARGV[4])
local NARGS = {g = 3, c = 6, k = 6, s = 3, l = 5}
local CAP = 1125899906842624
local a, flat = 5, 0
local out = {0, -1, nh, nl}
local plan = {}
local function deny(t)
  for q = 1, #plan do
    local sl = plan[q][4]
    if sl and sl.over then
      sl.st.slot[sl.got].ph = 0
      sl.st.n = sl.st.n - 1
      redis.call('HSET', KEYS[q], sl.f, sser(sl.st, sl.n))
    end
  end
  return t
end
for s = 1, #KEYS do
  local k = tonumber(ARGV[a]); a = a + 1
  local fields, pos = {}, {}
  for i = 1, k do
    fields[i] = ARGV[a + 1]
    pos[i] = a
    a = a + 1 + NARGS[ARGV[a]]
  end
  local vals = redis.call('HMGET', KEYS[s], unpack(fields))
  local sets, befores, ttl = {}, {}, 0
  local sl = nil
  for i = 1, k do
    local p, v = pos[i], vals[i]
    local kind = ARGV[p]
    local o = #out
    out[o + 1], out[o + 2], out[o + 3], out[o + 4] = 0, 0, 0, 0
    if kind == 'g' then
      local need, slack = tonumber(ARGV[p + 2]), tonumber(ARGV[p + 3])
      local bh, bl = split(v)
      if bh < nh or (bh == nh and bl < nl) then bh, bl = nh, nl end
      local dh, dl = bh - nh, bl - nl
      if dl < 0 then dh, dl = dh - 1, dl + B end
      out[o + 1], out[o + 2] = dh, dl
      if write then
        local st = 0
        local after
        if need < 0 then
          st = 2
        else
          local xl = bl + need
          local c = fdiv(xl, B)
          local xh = bh + c
          xl = xl - c * B
          if xh > 18446744073 or (xh == 18446744073 and xl > 709551613) then
            st = 2
          elseif dh >= 4503600 or dh * B + dl > slack then
            st = 1
          else
            after = dec(xh, xl)
            local post = fdiv(dh * B + dl + need + grace + 999999, 1000000)
            if post > ttl then ttl = post end
          end
        end
        if st ~= 0 then return deny({st, flat + i - 1, nh, nl, dh, dl, 0, 0}) end
        sets[#sets + 1] = fields[i]; sets[#sets + 1] = after; befores[#befores + 1] = v or ''
      end
    elseif kind == 'c' then
      local ki, W, A = wpos(p, 16777216)
      local cost, lim = tonumber(ARGV[p + 3]), tonumber(ARGV[p + 4])
      local wms, rms = fdiv(W + 999999, 1000000), fdiv(A + 999999, 1000000)
      local idx, pv, cu, ahead = ki, 0, 0, 0
      out[o + 1] = -1
      if v then
        local x, y, z = string.match(v, '^(%d+):(%d+):(%d+)$')
        local ks, sp, sc = tonumber(x), tonumber(y), tonumber(z)
        out[o + 1], out[o + 2], out[o + 3] = ks, sp, sc
        local d = (ki - ks) % 16777216
        if d == 0 then idx, pv, cu = ks, sp, sc
        elseif d == 1 then idx, pv, cu = ki, sc, 0
        elseif d < 8388608 then idx, pv, cu = ki, 0, 0
        else idx, pv, cu, ahead = ks, sp, sc, 16777216 - d; A = W end
      end
      if write then
        if cost < 0 or cu + cost > lim then return deny({1, flat + i - 1, nh, nl, out[o + 1], out[o + 2], out[o + 3], 0}) end
        local rh, rl = mul2(W, lim - cu - cost)
        local uh, ul = mul2(A, pv)
        if rh < uh or (rh == uh and rl < ul) then return deny({1, flat + i - 1, nh, nl, out[o + 1], out[o + 2], out[o + 3], 0}) end
        sets[#sets + 1] = fields[i]; sets[#sets + 1] = string.format('%d:%d:%d', idx, pv, cu + cost); befores[#befores + 1] = v or ''
        local ms = math.min(ahead * wms + wms + rms, CAP) + grace_ms
        if ms > ttl then ttl = ms end
      end
    elseif kind == 'k' then
      local ki, W, A = wpos(p, 4294967296)
      local cost, lim = tonumber(ARGV[p + 3]), tonumber(ARGV[p + 4])
      local wms, rms = fdiv(W + 999999, 1000000), fdiv(A + 999999, 1000000)
      local idx, cnt, ahead = ki, 0, 0
      out[o + 1] = -1
      if v then
        local x, y = string.match(v, '^(%d+):(%d+)$')
        local ks, sc = tonumber(x), tonumber(y)
        out[o + 1], out[o + 2] = ks, sc
        local d = (ki - ks) % 4294967296
        if d == 0 then idx, cnt = ks, sc
        elseif d < 2147483648 then idx, cnt = ki, 0
        else idx, cnt, ahead = ks, sc, 4294967296 - d end
      end
      if write then
        if cost < 0 or cnt + cost > lim then return deny({1, flat + i - 1, nh, nl, out[o + 1], out[o + 2], 0, 0}) end
        sets[#sets + 1] = fields[i]; sets[#sets + 1] = string.format('%d:%d', idx, cnt + cost); befores[#befores + 1] = v or ''
        local ms = math.min(ahead * wms + rms, CAP) + grace_ms
        if ms > ttl then ttl = ms end
      end
    elseif kind == 'l' then
      local cost, lim, W = tonumber(ARGV[p + 2]), tonumber(ARGV[p + 3]), tonumber(ARGV[p + 4])
      local th, tl = -1, 0
      if ARGV[p + 5] ~= '' then
        if ARGV[p + 5] ~= '-' then th, tl = split(ARGV[p + 5]) end
      else
        local wh = fdiv(W, B)
        th, tl = nh - wh, nl - (W - wh * B)
        if tl < 0 then th, tl = th - 1, tl + B end
      end
      local ts = {}
      if v and #v > 0 then
        for x in string.gmatch(v, '%d+') do ts[#ts + 1] = x end
      end
      local gone = 0
      while gone < #ts do
        local rh, rl = split(ts[gone + 1])
        if rh < th or (rh == th and rl <= tl) then gone = gone + 1 else break end
      end
      out[o + 1] = v or ''
      if write then
        if cost < 0 or #ts - gone + cost > lim then return deny({1, flat + i - 1, nh, nl, v or '', 0, 0, 0}) end
        local rh, rl = nh, nl
        if #ts > 0 then
          local lh, ll = split(ts[#ts])
          if lh > rh or (lh == rh and ll > rl) then rh, rl = lh, ll end
        end
        local r = dec(rh, rl)
        for j = 1, cost do ts[#ts + 1] = r end
        local keep = {}
        for j = math.max(1, #ts - lim + 1), #ts do keep[#keep + 1] = ts[j] end
        sets[#sets + 1] = fields[i]; sets[#sets + 1] = table.concat(keep, ' '); befores[#befores + 1] = v or ''
        local dh, dl = rh - nh, rl - nl
        if dl < 0 then dh, dl = dh - 1, dl + B end
        local ms = math.min(dh * 1000 + fdiv(dl + W + 999999, 1000000), CAP) + grace_ms
        if ms > ttl then ttl = ms end
      end
    else
      local n, lease = tonumber(ARGV[p + 2]), ARGV[p + 3]
      local st
      if v then st = sparse(v) else st = {tag = (tag + s - 2) % 16777215 + 1, n = 0, slot = {}} end
      out[o + 1] = st.n
      if write then
        if st.n >= n and lease == '0' then return deny({1, flat + i - 1, nh, nl, st.n, 0, 0, 0}) end
        sl = {i = i, o = o, st = st, n = n, lease = lease, v = v, f = fields[i]}
      end
    end
  end
  if sl then
    local st, n = sl.st, sl.n
    local dl = NEVER
    if sl.lease ~= '0' then dl = addsat(nh, nl, tonumber(sl.lease)) end
    local got = nil
    if st.n >= n then
      for j = 0, n - 1 do
        local x = st.slot[j]
        if x and x.ph == 2 and not dlt(nowstr, x.d) then
          got = j
          sl.over = true
          st.slot[j] = {g = nextgen(x.g), r = x.g, ph = 2, d = dl}
          break
        end
      end
      if not got then return deny({1, flat + sl.i - 1, nh, nl, st.n, 0, 0, 0}) end
    else
      local j = st.n
      while st.slot[j] and st.slot[j].ph ~= 0 do j = (j + 1) % n end
      local x = st.slot[j] or {g = 0, r = 0}
      st.slot[j] = {g = nextgen(x.g), r = x.r, ph = 2, d = dl}
      st.n = st.n + 1
      got = j
    end
    sl.got = got
    out[sl.o + 2], out[sl.o + 3], out[sl.o + 4] = st.slot[got].g, got, st.tag
    sets[#sets + 1] = fields[sl.i]; sets[#sets + 1] = sser(st, n); befores[#befores + 1] = sl.v or ''
  end
  flat = flat + k
  plan[s] = {sets, befores, ttl, sl}
end
if write then
  local nowms = nil
  for s = 1, #KEYS do
    local p = plan[s]
    local sets, befores, ttl, sl = p[1], p[2], p[3], p[4]
    if ttl < 1 then ttl = math.max(grace_ms, 1) end
    if sl then
      nowms = nowms or server_ms()
      local full = string.format('%d', nowms + ttl)
      local old = redis.call('HGET', KEYS[s], '_full')
      if old and tonumber(old) > nowms + ttl then full = old end
      sets[#sets + 1] = '_full'; sets[#sets + 1] = full; befores[#befores + 1] = old or ''
      if sl.lease == '0' then
        ttl = 0
      else
        local lms = fdiv(tonumber(sl.lease) + 999999, 1000000) + grace_ms
        if lms > ttl then ttl = lms end
      end
    end
    redis.call('HSET', KEYS[s], unpack(sets))
    if ttl == 0 then
      redis.call('PERSIST', KEYS[s])
    elseif redis.call('PTTL', KEYS[s]) < ttl then
      redis.call('PEXPIRE', KEYS[s], ttl)
    end
    if mode == '2' then
      for j = 1, #befores do
        out[#out + 1] = s; out[#out + 1] = sets[2 * j - 1]; out[#out + 1] = befores[j]; out[#out + 1] = sets[2 * j]
      end
    end
  end
end
return out
