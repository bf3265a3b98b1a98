-- KEYS[1]: a field's hash; KEYS[2]: meta. ARGV: tick, margin, the instant
-- as stored, '1' if the caller found the value undecodable, the largest
-- envelope read. Removes the entry stored under that instant, advancing the
-- registry's revision: one whose instant or envelope cannot be read
-- whatever its instant, another only at or beyond the horizon unless
-- undecodable. Returns 1 if removed, 0 if not there.
local tick = tonumber(ARGV[1])
local margin = tonumber(ARGV[2])
local field = ARGV[3]
local limit = tonumber(ARGV[5])
for _, key in ipairs(KEYS) do
  local refused = check_hash(key)
  if refused then return refused end
end
local stored = redis.call('HGET', KEYS[1], field)
if not stored then return 0 end
local at = placed(field)
local readable = false
if at and #stored <= limit then
  local ok, envelope = pcall(cjson.decode, stored)
  readable = ok and type(envelope) == 'table' and envelope.f == 1 and envelope.v ~= nil
end
if readable and ARGV[4] ~= '1' then
  local horizon = horizon_of(now_ms(), tick, margin)
  if at < horizon then return before_horizon(at, horizon) end
end
redis.call('HINCRBY', KEYS[2], 'revision', 1)
redis.call('HDEL', KEYS[1], field)
return 1
