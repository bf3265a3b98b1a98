-- KEYS[1]: a field's hash; KEYS[2]: meta. ARGV: tick, margin, the instant,
-- the largest envelope shipped. Removes the entry at the instant, at or
-- beyond the horizon, advancing the registry's revision; returns it as
-- stored ({its length} if too large), or false.
local tick = tonumber(ARGV[1])
local margin = tonumber(ARGV[2])
local at = tonumber(ARGV[3])
local limit = tonumber(ARGV[4])
for _, key in ipairs(KEYS) do
  local refused = check_hash(key)
  if refused then return refused end
end
local horizon = horizon_of(now_ms(), tick, margin)
if at < horizon then return before_horizon(at, horizon) end
local field = ms(at)
local removed = redis.call('HGET', KEYS[1], field)
if not removed then return false end
redis.call('HINCRBY', KEYS[2], 'revision', 1)
redis.call('HDEL', KEYS[1], field)
if #removed > limit then return {#removed} end
return removed
