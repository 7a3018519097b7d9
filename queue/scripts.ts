import { createHash } from 'node:crypto';
import type { RedisClient } from './connection.ts';

/**
 * Lua scripts for every read-modify-write of a grid record and of the cap bookkeeping, so that
 * concurrent submits, workers and cancels never interleave halfway. Record fields are opaque
 * strings here (JSON made in TypeScript); Lua only reads `state`, `queuedAt` and `userKey`.
 *
 * On a Cluster, scripts also touch keys they compute (records of other jobs, BullMQ keys); that is
 * safe only when the prefix is a hash tag (`{imagine}`), which puts every key in one slot.
 */

export interface LuaScript {
  readonly name: string;
  readonly source: string;
  readonly sha: string;
}

/** A script with its SHA (for EVALSHA). */
export function script(name: string, source: string): LuaScript {
  return { name, source, sha: createHash('sha1').update(source).digest('hex') };
}

const TERMINAL = `local function isTerminal(s) return s == 'done' or s == 'failed' or s == 'cancelled' end\n`;

/** Starts a finished record's TTL (its `ttlMs`) at `now`, once: the first end wins. */
const EXPIRE_FROM = `local function expireFrom(rec, now)
  if redis.call('HSETNX', rec, 'finishedAt', now) == 0 then return end
  local ttl = tonumber(redis.call('HGET', rec, 'ttlMs') or '')
  if ttl and ttl > 0 then
    redis.call('PEXPIRE', rec, ttl)
    redis.call('HSET', rec, 'expiresAt', tostring(tonumber(now) + ttl))
  end
end
`;

/**
 * The record has no TTL while queued or running (a job is never dropped unannounced, however long
 * it waits); it keeps `ttlMs`, which FINISH or CANCEL applies from the moment the job ends.
 * KEYS: record, user's job set, unfinished zset.
 * ARGV: id, spec, status, messageRef, ttlMs, perUser, maxDepth, now, orphanGraceMs, recordPrefix,
 *       generateJobPrefix (the default queue's, for records without their own), attempt (a token of
       this submit call, so UNRESERVE undoes only its own), jobPrefix (this job's model's queue).
 * Returns {'duplicate', state} | {'user', count} | {'full', depth} | {'ok', depthBefore}.
 */
export const RESERVE = script(
  'reserve',
  `${TERMINAL}
local recKey, userKey, unfinishedKey = KEYS[1], KEYS[2], KEYS[3]
local id = ARGV[1]
local ttl = tonumber(ARGV[5])
local perUser = tonumber(ARGV[6])
local maxDepth = tonumber(ARGV[7])
local now = tonumber(ARGV[8])
local grace = tonumber(ARGV[9])
local recPrefix = ARGV[10]
local jobPrefix = ARGV[11]

-- A slot is free again when its record is gone or finished, when its BullMQ job already failed,
-- or when its BullMQ job never appeared (the submitter died between reserving and enqueueing).
local function isStale(member)
  local rk = recPrefix .. member
  local st = redis.call('HGET', rk, 'state')
  if not st or isTerminal(st) then return true end
  -- Each record names its own model's queue; records from before that are on the default queue.
  local prefixOf = redis.call('HGET', rk, 'jobPrefix') or jobPrefix
  if redis.call('ZSCORE', prefixOf .. 'failed', member) then return true end
  if redis.call('EXISTS', prefixOf .. member) == 0 then
    local queuedAt = tonumber(redis.call('HGET', rk, 'queuedAt') or '0') or 0
    if now - queuedAt > grace then
      -- Nothing will ever run it: let its record expire like a finished one instead of leaking.
      redis.call('PEXPIRE', rk, ttl)
      return true
    end
  end
  return false
end

if redis.call('EXISTS', recKey) == 1 then
  return {'duplicate', redis.call('HGET', recKey, 'state') or ''}
end

for _, member in ipairs(redis.call('SMEMBERS', userKey)) do
  if isStale(member) then
    redis.call('SREM', userKey, member)
    redis.call('ZREM', unfinishedKey, member)
  end
end
local mine = redis.call('SCARD', userKey)
if mine >= perUser then return {'user', tostring(mine)} end

local depth = redis.call('ZCARD', unfinishedKey)
if depth >= maxDepth then
  for _, member in ipairs(redis.call('ZRANGE', unfinishedKey, 0, 49)) do
    if isStale(member) then
      local uk = redis.call('HGET', recPrefix .. member, 'userKey')
      if uk then redis.call('SREM', uk, member) end
      redis.call('ZREM', unfinishedKey, member)
    end
  end
  depth = redis.call('ZCARD', unfinishedKey)
  if depth >= maxDepth then return {'full', tostring(depth)} end
end

redis.call('HSET', recKey, 'spec', ARGV[2], 'state', 'queued', 'status', ARGV[3], 'messageRef', ARGV[4],
  'attempts', '0', 'queuedAt', ARGV[8], 'userKey', userKey, 'attempt', ARGV[12], 'ttlMs', ARGV[5], 'jobPrefix', ARGV[13])
redis.call('SADD', userKey, id)
redis.call('PEXPIRE', userKey, ttl)
redis.call('ZADD', unfinishedKey, now, id)
return {'ok', tostring(depth)}
`,
);

/**
 * Undoes the reservation of a submit call that failed (its caller was told so), if that call's
 * RESERVE ran at all; a record made by another call (a retry with the same id) is left alone.
 * KEYS: record, unfinished zset. ARGV: id, attempt. Returns 1 when it removed the record.
 */
export const UNRESERVE = script(
  'unreserve',
  `
if redis.call('HGET', KEYS[1], 'attempt') ~= ARGV[2] then return 0 end
local uk = redis.call('HGET', KEYS[1], 'userKey')
if uk then redis.call('SREM', uk, ARGV[1]) end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('DEL', KEYS[1])
return 1
`,
);

/**
 * A worker takes the job. KEYS: record, progress. ARGV: worker, now, attempts, runningStatus.
 * Returns {'missing'} | {terminalState} | {'run', queuedAt, firstStartedAt, recordTtlMs} (the TTL the
 * record gets once finished; the PTTL of a record written before records kept it).
 */
export const START = script(
  'start',
  `${TERMINAL}
local st = redis.call('HGET', KEYS[1], 'state')
if not st then return {'missing'} end
if isTerminal(st) then return {st} end
redis.call('HSET', KEYS[1], 'state', 'running', 'status', ARGV[4], 'worker', ARGV[1], 'attempts', ARGV[3])
redis.call('HSETNX', KEYS[1], 'startedAt', ARGV[2])
redis.call('DEL', KEYS[2])
return {'run', redis.call('HGET', KEYS[1], 'queuedAt') or '0', redis.call('HGET', KEYS[1], 'startedAt'),
  redis.call('HGET', KEYS[1], 'ttlMs') or tostring(redis.call('PTTL', KEYS[1]))}
`,
);

/**
 * Moves the record from one state to another only if it is still in the first (a retry puts a
 * running job back to queued, unless it was cancelled meanwhile). KEYS: record. ARGV: from, to,
 * status. Returns 1 when it moved.
 */
export const TRANSITION = script(
  'transition',
  `
if redis.call('HGET', KEYS[1], 'state') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'state', ARGV[2], 'status', ARGV[3])
return 1
`,
);

/**
 * Ends a job, starts its record's TTL (from now, not from submission) and frees its slots. A
 * record already ended (e.g. cancelled while running) keeps its state and TTL. KEYS: record, unfinished zset, progress. ARGV: id, state, status, phases ('' = keep),
 * result ('' = none), now. Returns {final state or 'missing', '1' when this call ended it}.
 */
export const FINISH = script(
  'finish',
  `${TERMINAL}${EXPIRE_FROM}
local st = redis.call('HGET', KEYS[1], 'state')
redis.call('DEL', KEYS[3])
if not st then
  redis.call('ZREM', KEYS[2], ARGV[1])
  return {'missing', '0'}
end
local changed = '0'
if not isTerminal(st) then
  redis.call('HSET', KEYS[1], 'state', ARGV[2], 'status', ARGV[3])
  st = ARGV[2]
  changed = '1'
end
expireFrom(KEYS[1], ARGV[6])
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'phases', ARGV[4]) end
if ARGV[5] ~= '' and st == 'done' then redis.call('HSET', KEYS[1], 'result', ARGV[5]) end
local uk = redis.call('HGET', KEYS[1], 'userKey')
if uk then redis.call('SREM', uk, ARGV[1]) end
redis.call('ZREM', KEYS[2], ARGV[1])
return {st, changed}
`,
);

/**
 * Marks a job cancelled (the worker or the canceller then frees its slots and delivers) and starts
 * its record's TTL. KEYS: record. ARGV: status, by, now. Returns {'missing', ''} | {'terminal', state} | {'ok', previous}.
 */
export const CANCEL = script(
  'cancel',
  `${TERMINAL}${EXPIRE_FROM}
local st = redis.call('HGET', KEYS[1], 'state')
if not st then return {'missing', ''} end
if isTerminal(st) then return {'terminal', st} end
redis.call('HSET', KEYS[1], 'state', 'cancelled', 'status', ARGV[1], 'cancelBy', ARGV[2])
expireFrom(KEYS[1], ARGV[3])
return {'ok', st}
`,
);

/**
 * Stores a job's PNGs under an image budget. Every stored set is booked in a sorted set by expiry
 * time with its size, so the total is known without scanning and the oldest go first: sets that
 * expired by TTL are dropped from the books, then the oldest others are deleted while the total is
 * over `maxBytes` (never the set just stored). A re-render of the same id replaces its entry.
 * KEYS: image index zset, sizes hash, total bytes.
 * ARGV: id, now, expireAt (ms), maxBytes (0 = no limit), resultPrefix, image count, grid PNG, image PNGs….
 * Returns {total bytes, sets evicted}.
 */
export const STORE_IMAGES = script(
  'storeImages',
  `
local index, sizes, totalKey = KEYS[1], KEYS[2], KEYS[3]
local id, now, expireAt, maxBytes, res = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]
local count = tonumber(ARGV[6])
local function forget(member)
  local entry = redis.call('HGET', sizes, member)
  redis.call('ZREM', index, member)
  if not entry then return 0 end
  local bytes, n = string.match(entry, '^(%d+):(%d+)$')
  redis.call('HDEL', sizes, member)
  redis.call('DECRBY', totalKey, tonumber(bytes) or 0)
  return tonumber(n) or 0
end
for _, member in ipairs(redis.call('ZRANGEBYSCORE', index, '-inf', now)) do forget(member) end
forget(id)
local bytes = #ARGV[7]
redis.call('SET', res .. id .. ':grid', ARGV[7], 'PXAT', expireAt)
for k = 0, count - 1 do
  local png = ARGV[8 + k]
  redis.call('SET', res .. id .. ':img:' .. k, png, 'PXAT', expireAt)
  bytes = bytes + #png
end
redis.call('ZADD', index, expireAt, id)
redis.call('HSET', sizes, id, bytes .. ':' .. count)
local total = redis.call('INCRBY', totalKey, bytes)
local evicted = 0
while maxBytes > 0 and total > maxBytes do
  -- The grid just stored stays even when it expires first (made again late in its record's life).
  local oldest = nil
  for _, member in ipairs(redis.call('ZRANGE', index, 0, 1)) do
    if member ~= id then
      oldest = member
      break
    end
  end
  if not oldest then break end
  local n = forget(oldest)
  redis.call('DEL', res .. oldest .. ':grid')
  for k = 0, n - 1 do redis.call('DEL', res .. oldest .. ':img:' .. k) end
  total = tonumber(redis.call('GET', totalKey)) or 0
  evicted = evicted + 1
end
return {tostring(total), tostring(evicted)}
`,
);

/**
 * Merges string fields into the record's messageRef, later keys winning (as `mergeMessageRef` in
 * records.ts does). KEYS: record. ARGV: patch JSON. Returns 0 if gone.
 */
export const MERGE_MESSAGE_REF = script(
  'mergeMessageRef',
  `
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local current = cjson.decode(redis.call('HGET', KEYS[1], 'messageRef') or '{}')
for k, v in pairs(cjson.decode(ARGV[1])) do current[k] = v end
redis.call('HSET', KEYS[1], 'messageRef', cjson.encode(current))
return 1
`,
);

/** Runs a script by SHA, loading it on the first NOSCRIPT (after a restart or failover). */
export async function runScript(
  client: RedisClient,
  lua: LuaScript,
  keys: readonly string[],
  args: readonly (string | number | Buffer)[],
): Promise<unknown> {
  try {
    return await client.evalsha(lua.sha, keys.length, ...keys, ...args);
  } catch (error) {
    if (error instanceof Error && error.message.startsWith('NOSCRIPT')) {
      return client.eval(lua.source, keys.length, ...keys, ...args);
    }
    throw error;
  }
}

/** Scripts answer arrays of strings; this narrows them. */
export function stringReply(reply: unknown): string[] {
  if (!Array.isArray(reply)) return [String(reply)];
  return reply.map((item) => (item === null || item === undefined ? '' : String(item)));
}
