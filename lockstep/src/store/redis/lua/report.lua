-- Follows fetch.lua, in the same script, or a prelude of its own (the
-- record script, see scripts.rs): keeps the record of the process that
-- fetched. `fleet_key`: the fleet's hash (process id -> record),
-- `expiry_key`: its expiry set (process id -> expiry, ms); `t`: the
-- store's TIME; `revision`: the revision served. ARGV[5]: the process id, ARGV[6]: its body, ARGV[7]: how long the
-- record lasts (ms), ARGV[8]: the largest body kept, ARGV[9]: how many
-- expired records to delete at most. The record is
-- {"seen":<store ms>,"revision":<the revision served>,"body":"<body>"}.
-- The fetch is served whatever becomes of the record: `out[7]` is 1 if it
-- was kept, else why not (a user that may not write, a key of the wrong
-- type, a body too large).
local function record()
  local process, body = ARGV[5], ARGV[6]
  if #body > tonumber(ARGV[8]) then
    error('TOO_LARGE the body is ' .. #body .. ' bytes, over ' .. ARGV[8], 0)
  end
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local expires = now + tonumber(ARGV[7])
  -- Whatever fails below (a key of the wrong type, a user that may not
  -- write) leaves at worst an expiry without its record, which nothing
  -- reads and a later sweep deletes: never a record without its expiry.
  -- Expired records go, a bounded number per fetch: their ids from the set
  -- last.
  local gone = redis.call('ZRANGE', expiry_key, '-inf', now, 'BYSCORE', 'LIMIT', 0, tonumber(ARGV[9]))
  if #gone > 0 then
    redis.call('HDEL', fleet_key, unpack(gone))
    redis.call('ZREM', expiry_key, unpack(gone))
  end
  -- The expiry first.
  redis.call('ZADD', expiry_key, string.format('%d', expires), process)
  redis.call('HSET', fleet_key, process, '{"seen":' .. string.format('%d', now) ..
    ',"revision":' .. string.format('%d', revision) .. ',"body":' .. cjson.encode(body) .. '}')
  -- Both keys go by themselves when the last record expires: their expiry
  -- only ever moves later (GT), set first on a key that has none (NX).
  for _, key in ipairs({fleet_key, expiry_key}) do
    if redis.call('PEXPIREAT', key, string.format('%d', expires), 'GT') == 0 then
      redis.call('PEXPIREAT', key, string.format('%d', expires), 'NX')
    end
  end
end
local ok, why = pcall(record)
if ok then
  out[7] = 1
elseif type(why) == 'table' then
  out[7] = why.err or 'refused'
else
  out[7] = tostring(why)
end
return out
