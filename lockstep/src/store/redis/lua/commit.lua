-- KEYS[1]: meta; KEYS[2]: the write id's key; KEYS[3..]: the fields'
-- hashes. ARGV: tick, margin, history, a new epoch id, the steps as JSON
-- ([{"h": after} or {"a": at}, "v": [[key index, value JSON], ...]]), the
-- write id, the writer, the largest value, the most bytes the registry's
-- pending entries may hold, the most a write may add to one beyond that. Everything that could fail is checked before
-- the first write: all or nothing.
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
-- The pending bound: what the registry's pending entries hold (envelopes,
-- by HSTRLEN) over every field lockstep wrote (the set `fields`), every
-- field a build's schema names and those written now, before and after
-- the write; refused if it grows them beyond the bound.
-- Each entry's envelope, as written below: its strings encoded by cjson,
-- the value as the JSON text it was given (decoding and encoding it again
-- would round its numbers); its head carries the revision this write makes.
local revision = (tonumber(redis.call('HGET', KEYS[1], 'revision')) or 0) + 1
local head = '{"f":1,"w":' .. cjson.encode(ARGV[6]) .. ',"t":' .. ms(now) ..
  ',"by":' .. cjson.encode(ARGV[7]) .. ',"r":' .. ms(revision) .. ',"v":'
local head_bytes = #head + 1
local keys = {}
for k = 3, #KEYS do keys[KEYS[k]] = true end
local prefix = string.sub(KEYS[1], 1, -5)
local written = redis.pcall('SMEMBERS', prefix .. 'fields')
if not written.err then
  for _, key in ipairs(written) do keys[key] = true end
end
local schemas = redis.pcall('HVALS', prefix .. 'schemas')
if not schemas.err then
  for _, json in ipairs(schemas) do
    local ok, schema = pcall(cjson.decode, json)
    if ok and type(schema) == 'table' and type(schema.fields) == 'table' then
      for _, field in ipairs(schema.fields) do
        if type(field) == 'table' and type(field.key) == 'string' then
          keys[prefix .. 'field:' .. field.key] = true
        end
      end
    end
  end
end
local before = 0
for key in pairs(keys) do
  if redis.call('TYPE', key)['ok'] == 'hash' then
    for _, f in ipairs(redis.call('HKEYS', key)) do
      local n = placed(f)
      if n and n > now then before = before + redis.call('HSTRLEN', key, f) end
    end
  end
end
-- A write of at most ARGV[10] bytes to a registry already beyond the
-- bound passes (its kill switch can still be flipped): as
-- write::check_pending says.
local after, added = before, 0
for i, step in ipairs(steps) do
  for _, kv in ipairs(step.v) do
    after = after - redis.call('HSTRLEN', KEYS[kv[1]], ms(instants[i])) + head_bytes + #kv[2]
    added = added + #kv[2]
  end
end
local bound = tonumber(ARGV[9])
if after > bound and after > before and not (before > bound and added <= tonumber(ARGV[10])) then
  return redis.error_reply('TOO_MUCH_PENDING ' .. ms(after) .. ' ' .. ARGV[9])
end
-- Every check passed: the first write advances the registry's revision
-- (to `revision`, which every entry's envelope carries).
redis.call('HINCRBY', KEYS[1], 'revision', 1)
if redis.call('HEXISTS', KEYS[1], 'epoch') == 0 then
  redis.call('HSET', KEYS[1], 'epoch', ARGV[4], 'created', ms(now))
end
local writes = {}
for i, step in ipairs(steps) do
  for _, kv in ipairs(step.v) do
    writes[#writes + 1] = {KEYS[kv[1]], ms(instants[i]), head .. kv[2] .. '}'}
  end
end
for _, w in ipairs(writes) do
  redis.call('HSET', w[1], w[2], w[3])
end
for k = 3, #KEYS do redis.pcall('SADD', prefix .. 'fields', KEYS[k]) end
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
