-- KEYS[1]: meta, KEYS[2]: the builds' schemas (digest -> JSON), KEYS[3]:
-- when each was last published (digest -> ms, the store's clock).
-- ARGV[1]: the schema's JSON, ARGV[2]: its digest, ARGV[3]: how long a
-- schema nobody publishes is kept (ms). Keeps the schema as the latest and
-- as its build's, and removes the builds' schemas not published for that
-- long (a live build's processes publish theirs again when a fetch finds
-- it gone).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], 'schema', ARGV[1])
local old = redis.call('ZRANGE', KEYS[3], '-inf',
  '(' .. string.format('%d', now - tonumber(ARGV[3])), 'BYSCORE', 'LIMIT', 0, 100)
if #old > 0 then
  redis.call('HDEL', KEYS[2], unpack(old))
  redis.call('ZREM', KEYS[3], unpack(old))
end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[1])
redis.call('ZADD', KEYS[3], string.format('%d', now), ARGV[2])
return 1
