-- KEYS[1]: meta (a fetch with a report passes the fleet's keys after it).
-- ARGV[1]: the largest envelope shipped; ARGV[2]: the fields' names, as a
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
-- it ships. A hash whose whole size is within the limit (the usual case) is
-- read in one HGETALL. Leaves `t` (the TIME) and `revision` for what
-- follows.
local limit = tonumber(ARGV[1])
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
for _, name in ipairs(names) do
  local key = ARGV[#ARGV] .. name
  local size = redis.pcall('MEMORY', 'USAGE', key, 'SAMPLES', '0')
  local fields = nil
  if type(size) == 'table' and size.err then
    out[#out + 1] = size.err
  elseif not size or size <= limit then
    out[#out + 1] = redis.pcall('HGETALL', key)
    if out[#out].err then out[#out] = out[#out].err end
  else
    fields = redis.pcall('HKEYS', key)
    if fields.err then out[#out + 1] = fields.err end
  end
  if fields and not fields.err then
    local flat, small = {}, {}
    for j, f in ipairs(fields) do
      flat[2 * j - 1] = f
      local n = redis.call('HSTRLEN', key, f)
      if n > limit then flat[2 * j] = {n} else small[#small + 1] = j end
    end
    -- HMGET in batches: unpack takes a few thousand values at most.
    for from = 1, #small, 500 do
      local names = {}
      for s = from, math.min(from + 499, #small) do names[#names + 1] = fields[small[s]] end
      local values = redis.call('HMGET', key, unpack(names))
      for s = 1, #names do flat[2 * small[from + s - 1]] = values[s] end
    end
    out[#out + 1] = flat
  end
end
