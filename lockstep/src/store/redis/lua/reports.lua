-- KEYS[1]: the fleet's hash, KEYS[2]: its expiry set (see report.lua),
-- KEYS[3]: the builds' schemas (see publish.lua). Returns the store's TIME,
-- the schemas flat (digest, JSON; none if the key is not a hash) and, flat,
-- each live process's id and record: live by the store's clock, whether or
-- not a fetch has deleted the expired ones yet.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local schemas = redis.pcall('HGETALL', KEYS[3])
if schemas.err then schemas = {} end
local out = {t[1], t[2], schemas}
local live = redis.call('ZRANGE', KEYS[2], '(' .. string.format('%d', now), '+inf', 'BYSCORE')
-- HMGET in batches: unpack takes a few thousand values at most.
for from = 1, #live, 500 do
  local ids = {}
  for i = from, math.min(from + 499, #live) do ids[#ids + 1] = live[i] end
  local records = redis.call('HMGET', KEYS[1], unpack(ids))
  for i, id in ipairs(ids) do
    if records[i] then
      out[#out + 1] = id
      out[#out + 1] = records[i]
    end
  end
end
return out
