-- KEYS[1]: meta; KEYS[2]: the write id's key; KEYS[3..]: the fields'
-- hashes. ARGV: tick, margin, history, a new epoch id, the steps as JSON
-- ([{"h": after} or {"a": at}, "v": [[key index, value JSON], ...]]), the
-- write id, the writer, the largest value. Everything that could fail is
-- checked before the first write: all or nothing.
local done = redis.call('GET', KEYS[2])
if done then return done end
local tick = tonumber(ARGV[1])
local margin = tonumber(ARGV[2])
local history = tonumber(ARGV[3])
local limit = tonumber(ARGV[8])
for k = 1, #KEYS do
  if k ~= 2 then
    local refused = check_hash(KEYS[k])
    if refused then return refused end
  end
end
local now = now_ms()
local horizon = horizon_of(now, tick, margin)
local steps = cjson.decode(ARGV[5])
local instants = {}
for i, step in ipairs(steps) do
  local at
  if step.h then
    at = ceil(horizon + step.h, tick)
  else
    at = ceil(step.a, tick)
    if at < horizon then return before_horizon(at, horizon) end
  end
  instants[i] = at
end
for _, step in ipairs(steps) do
  for _, kv in ipairs(step.v) do
    if #kv[2] > limit then
      return redis.error_reply('TOO_LARGE ' .. KEYS[kv[1]] .. ' ' .. #kv[2])
    end
  end
end
-- Every check passed: the first write advances the registry's revision,
-- which every entry of the write carries.
local revision = redis.call('HINCRBY', KEYS[1], 'revision', 1)
if redis.call('HEXISTS', KEYS[1], 'epoch') == 0 then
  redis.call('HSET', KEYS[1], 'epoch', ARGV[4], 'created', ms(now))
end
-- The envelope: its strings encoded by cjson, the value as the JSON text it
-- was given (decoding and encoding it again would round its numbers).
local head = '{"f":1,"w":' .. cjson.encode(ARGV[6]) .. ',"t":' .. ms(now) ..
  ',"by":' .. cjson.encode(ARGV[7]) .. ',"r":' .. ms(revision) .. ',"v":'
local writes = {}
for i, step in ipairs(steps) do
  for _, kv in ipairs(step.v) do
    writes[#writes + 1] = {KEYS[kv[1]], ms(instants[i]), head .. kv[2] .. '}'}
  end
end
for _, w in ipairs(writes) do
  redis.call('HSET', w[1], w[2], w[3])
end
for k = 3, #KEYS do
  local ats = {}
  for _, f in ipairs(redis.call('HKEYS', KEYS[k])) do
    local n = placed(f)
    if n then ats[#ats + 1] = n end
  end
  table.sort(ats)
  local active = 0
  for i, a in ipairs(ats) do
    if a <= now then active = i end
  end
  for i = 1, active - 1 - history do
    redis.call('HDEL', KEYS[k], ms(ats[i]))
  end
end
local parts = {}
for i, at in ipairs(instants) do parts[i] = ms(at) end
local result = table.concat(parts, ',')
redis.call('SET', KEYS[2], result, 'EX', 86400)
return result
