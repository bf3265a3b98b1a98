-- KEYS[1]: meta; KEYS[2..]: the fields' hashes. ARGV[1]: the largest
-- envelope shipped. Returns the store's TIME, the epoch, whether a schema is
-- held, and every field's hash flat (an error text for a key that is not a
-- hash); an envelope over the limit is replaced by {its length}.
local limit = tonumber(ARGV[1])
local t = redis.call('TIME')
local meta = redis.call('HMGET', KEYS[1], 'epoch', 'created')
local held = redis.call('HEXISTS', KEYS[1], 'schema')
local out = {t[1], t[2], meta[1], meta[2], held}
for i = 2, #KEYS do
  local r = redis.pcall('HGETALL', KEYS[i])
  if type(r) == 'table' and r.err then
    out[#out + 1] = r.err
  else
    for j = 2, #r, 2 do
      if #r[j] > limit then r[j] = {#r[j]} end
    end
    out[#out + 1] = r
  end
end
return out
