-- The state store's Redis scripts, one text for every driver: the C client embeds this file
-- (the Makefile turns it into a C string at build time) and the OpenResty driver can require
-- it. Each script runs by EVALSHA (loaded with SCRIPT LOAD, sent again on NOSCRIPT), timed by
-- Redis's own TIME so that the whole fleet reads one clock. Every key written gets a TTL.
--
-- Keys: <prefix>:{<client_id>}:... (the hash tag keeps one client's keys on one cluster slot).
return {
  -- take: KEYS[1] a rate budget: a sorted set of leases, each member "<lease id>:<slots>" scored by
  -- when its slots stop counting; KEYS[2] the number of slots the set holds. ARGV: n slots
  -- wanted, the limit, the window and the lease in microseconds, the lease id. Granted slots
  -- are spent within the lease, so they count until lease + window after now. One member per
  -- lease, not per slot: a take costs the same for 1 slot as for 1000.
  -- Returns {granted, microseconds to wait when none}.
  take = [[
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local key, count = KEYS[1], KEYS[2]
local n, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
local window, lease = tonumber(ARGV[3]), tonumber(ARGV[4])
local snow = string.format('%d', now)
local used = tonumber(redis.call('GET', count) or '0')
if redis.call('EXISTS', key) == 0 then used = 0 end
local gone = redis.call('ZRANGEBYSCORE', key, '-inf', snow)
if #gone > 0 then
  for _, m in ipairs(gone) do used = used - tonumber(string.match(m, ':(%d+)$')) end
  redis.call('ZREMRANGEBYSCORE', key, '-inf', snow)
end
if used < 0 then used = 0 end
local free = limit - used
if free <= 0 then
  redis.call('SET', count, used, 'KEEPTTL')
  local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  local wait = first[2] and tonumber(first[2]) - now or 1000
  if wait < 1 then wait = 1 end
  return {0, wait}
end
-- the last quarter of a budget goes one slot at a time: a slot leased and never spent would
-- stand idle while others wait for the window
if free <= limit / 4 then n = 1 end
if n > free then n = free end
local ttl = math.floor((lease + window) / 1000) + 1000
redis.call('ZADD', key, string.format('%d', now + lease + window), ARGV[5] .. ':' .. n)
redis.call('SET', count, used + n, 'PX', ttl)
redis.call('PEXPIRE', key, ttl)
return {n, 0}
]],
  -- give: KEYS as take's; ARGV: the lease id, the slots it was granted, how many of them
  -- went unspent. They count no more. Returns how many were given back.
  give = [[
local m = ARGV[1] .. ':' .. ARGV[2]
local score = redis.call('ZSCORE', KEYS[1], m)
if not score then return 0 end
local n, back = tonumber(ARGV[2]), tonumber(ARGV[3])
if back > n then back = n end
redis.call('ZREM', KEYS[1], m)
if n > back then redis.call('ZADD', KEYS[1], score, ARGV[1] .. ':' .. (n - back)) end
local used = tonumber(redis.call('GET', KEYS[2]) or '0') - back
if used < 0 then used = 0 end
redis.call('SET', KEYS[2], used, 'KEEPTTL')
return back
]],
  -- token_put: KEYS[1] the token; ARGV: the new text, the text last seen ('' for none), the
  -- TTL in milliseconds. Compare-and-set: stored only if nobody stored another meanwhile.
  token_put = [[
local cur = redis.call('GET', KEYS[1])
if (cur == false and ARGV[2] == '') or cur == ARGV[2] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
  return 1
end
return 0
]],
  -- unlock: KEYS[1] the lock; ARGV[1] its owner. Only the owner lets it go.
  unlock = [[
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
]],
}
