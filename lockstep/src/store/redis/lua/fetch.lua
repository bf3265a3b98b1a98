-- KEYS[1]: meta (a fetch with a report passes the fleet's keys after it).
-- ARGV[1]: `<the largest envelope shipped>:<the most bytes of values one
-- fetch ships>`; ARGV[2]: the fields' names, as a
-- JSON array, and the last ARGV: the prefix of their hash keys
-- (`lockstep:{ns}:field:`, meta's hash tag, so its slot): not KEYS, which
-- the server sets up one by one, and as short as can be, since every byte
-- of a call costs the server; ARGV[3], ARGV[4]: the epoch and revision the
-- caller holds ('' for none); the one before last: the schema the fetching
-- build publishes, `<digest>:<length>` ('' for none). Builds the reply in `out`: the store's TIME, the epoch, whether a
-- schema is held, the registry's revision, whether a record was kept (false
-- here: the report script sets it), whether the registry is unchanged (its
-- epoch and revision those held: then nothing more, and no field key is
-- read, nor the list of them decoded), and every field's hash flat (an
-- error text for a key that is not a hash); an envelope over the limit is
-- replaced by {its length}, and never read: the script copies no more than
-- it ships; a field past the fetch's budget is not read at all (each of its
-- entries is {the field's bytes, 0}). A hash whose whole size is within the
-- limit (the usual case) is read in one HGETALL. Leaves `t` (the TIME) and `revision` for what
-- follows.
local limit, budget = string.match(ARGV[1], '^(%d+):(%d+)$')
limit, budget = tonumber(limit), tonumber(budget)
local t = redis.call('TIME')
local meta = redis.call('HMGET', KEYS[1], 'epoch', 'created', 'revision')
local revision = tonumber(meta[3]) or 0
-- Whether the schema is held: the latest, and the build's own at its
-- length (one rewritten by hand is published again); for a tool, any.
local held = redis.call('HEXISTS', KEYS[1], 'schema')
local digest, length = string.match(ARGV[#ARGV - 1], '^(%x+):(%d+)$')
if digest and held == 1 then
  local n = redis.pcall('HSTRLEN', string.sub(KEYS[1], 1, -5) .. 'schemas', digest)
  if n ~= tonumber(length) then held = 0 end
end
local unchanged = ARGV[3] ~= '' and meta[1] == ARGV[3] and meta[2] ~= false
  and string.format('%d', revision) == ARGV[4]
local out = {t[1], t[2], meta[1], meta[2], held, revision, false, unchanged and 1 or 0}
local names = unchanged and {} or cjson.decode(ARGV[2])
-- First what each field holds (its values' bytes: a small key's whole
-- MEMORY USAGE, a large one's values within the limit, by HSTRLEN), then
-- which fields fit the budget, smallest first: the others are not read,
-- each of their entries replaced by {the field's bytes, 0}.
local plan = {}
for i, name in ipairs(names) do
  local p = {key = ARGV[#ARGV] .. name, bytes = 0}
  local size = redis.pcall('MEMORY', 'USAGE', p.key, 'SAMPLES', '0')
  if type(size) == 'table' and size.err then
    p.err = size.err
  elseif not size or size <= limit then
    p.small, p.bytes = true, size or 0
  else
    local fields = redis.pcall('HKEYS', p.key)
    if fields.err then
      p.err = fields.err
    else
      p.fields, p.lengths = fields, {}
      for j, f in ipairs(fields) do
        local n = redis.call('HSTRLEN', p.key, f)
        p.lengths[j] = n
        if n <= limit then p.bytes = p.bytes + n end
      end
    end
  end
  plan[i] = p
end
local order = {}
for i = 1, #plan do order[i] = i end
table.sort(order, function(a, b)
  if plan[a].bytes ~= plan[b].bytes then return plan[a].bytes < plan[b].bytes end
  return names[a] < names[b]
end)
local total = 0
for _, i in ipairs(order) do
  if not plan[i].err then
    total = total + plan[i].bytes
    plan[i].skip = total > budget
  end
end
for _, p in ipairs(plan) do
  if p.err then
    out[#out + 1] = p.err
  elseif p.skip then
    local fields = p.fields or redis.call('HKEYS', p.key)
    local flat = {}
    for j, f in ipairs(fields) do
      flat[2 * j - 1] = f
      flat[2 * j] = {p.bytes, 0}
    end
    out[#out + 1] = flat
  elseif p.small then
    out[#out + 1] = redis.pcall('HGETALL', p.key)
    if out[#out].err then out[#out] = out[#out].err end
  else
    local flat, small = {}, {}
    for j, f in ipairs(p.fields) do
      flat[2 * j - 1] = f
      if p.lengths[j] > limit then flat[2 * j] = {p.lengths[j]} else small[#small + 1] = j end
    end
    -- HMGET in batches: unpack takes a few thousand values at most.
    for from = 1, #small, 500 do
      local batch = {}
      for s = from, math.min(from + 499, #small) do batch[#batch + 1] = p.fields[small[s]] end
      local values = redis.call('HMGET', p.key, unpack(batch))
      for s = 1, #batch do flat[2 * small[from + s - 1]] = values[s] end
    end
    out[#out + 1] = flat
  end
end
