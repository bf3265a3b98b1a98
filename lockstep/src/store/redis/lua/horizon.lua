-- Shared by the scripts that write: the store's clock, tick arithmetic and
-- the horizon, as lockstep's `Tick` computes them. Prepended to each script.
local function ms(x) return string.format('%d', x) end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function ceil(x, tick)
  local f = math.floor(x / tick) * tick
  if f == x then return x end
  return f + tick
end
local function horizon_of(now, tick, margin)
  return ceil(now + tick + margin, tick)
end
local function before_horizon(at, horizon)
  return redis.error_reply('BEFORE_HORIZON ' .. ms(at) .. ' ' .. ms(horizon))
end
-- Refuses, before anything is written, a key that holds something else than
-- a hash: a script that fails midway is not rolled back.
local function check_hash(key)
  local kind = redis.call('TYPE', key)['ok']
  if kind ~= 'hash' and kind ~= 'none' then
    return redis.error_reply('WRONGTYPE_KEY ' .. key .. ' ' .. kind)
  end
end
-- The instant a hash field names, if it is one: a canonical decimal of at
-- most 15 digits (what lockstep writes; the Rust side reads the same).
local function placed(field)
  if not string.match(field, '^%-?%d+$') or #field > 16 then return nil end
  local n = tonumber(field)
  if ms(n) ~= field or math.abs(n) >= 1e15 then return nil end
  return n
end
