import { PRIORITY_LIMIT } from 'bullmq';
import { ErrorCode, InternalError } from '../core/errors.ts';
import type { Origin } from '../core/jobspec.ts';
import type { RedisClient } from './connection.ts';
import type { QueueKeys } from './keys.ts';
import type { QueueLogger } from './logger.ts';
import { type LuaScript, runScript, script } from './scripts.ts';

/**
 * Fair sharing of the GPU between teams: start-time fair queueing on BullMQ priorities.
 *
 * Each job gets a stamp, its BullMQ priority (lower runs first, FIFO within one priority):
 *   stamp = max(last stamp of the team's jobs still tracked + 1, the queue's virtual time)
 * where the virtual time is the lowest stamp still waiting in the queue (a team arriving now
 * queues behind the round being served, never ahead of it and never a whole backlog behind).
 * So a team's k-th waiting job runs in round k: a burst of 100 from one team interleaves with
 * one job from each other team instead of going first.
 *
 * Why this and not a counter the worker advances: the virtual time and each team's last stamp
 * are read from BullMQ's own state at each stamp (is the job still prioritized or delayed,
 * running, or gone?), so nothing needs a hook in the worker, cancel or retry paths, and
 * nothing can drift: a cancelled, failed or finished job stops counting the moment BullMQ
 * says so, a restarted bot or worker finds everything in Redis, and several bots stay
 * consistent because the whole step is one Lua script. A queue that empties starts again from
 * stamp 1; one that never empties is rebased before stamps reach BullMQ's PRIORITY_LIMIT.
 *
 * Retries keep their stamp (BullMQ keeps a job's priority when it retries it), so a job that
 * failed once goes back near the head, not behind the other teams' backlog. Jobs BullMQ puts in
 * the plain wait list (re-renders of expired PNGs, stalled jobs taken over) run before every
 * prioritized job, as they did before.
 */

/** BullMQ refuses a priority above this (bullmq classes/job.js: 2^21 - 1). */
export const MAX_STAMP = PRIORITY_LIMIT;

/** Past this stamp the queue's stamps are shifted down (stamps in use span about one queue depth). */
export const REBASE_AT = 2 ** 20;

/**
 * Who takes turns: the workspace (Slack team, Discord guild, the playground) when the origin has
 * one, else the channel (a Discord DM, an origin without a workspace), per surface.
 */
export function fairTeam(origin: Pick<Origin, 'surface' | 'workspace' | 'channel'>): string {
  return origin.workspace === undefined
    ? `${origin.surface}:c:${origin.channel}`
    : `${origin.surface}:w:${origin.workspace}`;
}

/** The Redis keys of one queue's fairness bookkeeping (all under the queue layer's prefix). */
export function fairKeys(
  keys: QueueKeys,
  model: string | undefined,
): { stamps: string; teamOf: string; teamPrefix: string; jobPrefix: string } {
  const base = keys.fairPrefix(model);
  return {
    /** Sorted set: tracked job id → stamp. */
    stamps: `${base}stamps`,
    /** Hash: tracked job id → team. */
    teamOf: `${base}team`,
    /** `<teamPrefix><team>`: sorted set of one team's tracked job ids by stamp. */
    teamPrefix: `${base}t:`,
    jobPrefix: keys.jobPrefixOf(model),
  };
}

/**
 * Stamps one job (see above) and returns its stamp; a job already stamped and still waiting
 * keeps its stamp (a redelivered submit re-adding a lost job).
 * KEYS: stamps, teamOf, the team's zset, the job's record.
 * ARGV: id, team, teamPrefix, jobPrefix, recordPrefix, now, orphanGraceMs, rebaseAt, maxStamp.
 * Returns {stamp, shift} (shift: how far the queue was rebased by this call, 0 mostly).
 */
export const STAMP: LuaScript = script(
  'fairStamp',
  `
local stampsKey, teamOfKey, teamKey = KEYS[1], KEYS[2], KEYS[3]
local id, team, teamPrefix, jobPrefix, recPrefix = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local now, grace = tonumber(ARGV[6]), tonumber(ARGV[7])
local rebaseAt, maxStamp = tonumber(ARGV[8]), tonumber(ARGV[9])
local prioritized, delayed, active = jobPrefix .. 'prioritized', jobPrefix .. 'delayed', jobPrefix .. 'active'

-- 'waiting': will still start with its stamp (prioritized, or delayed for a retry);
-- 'pending': stamped, its submitter not yet done adding it (its record queued, within the grace);
-- 'active': started, and may come back with its stamp (retry, release on shutdown);
-- 'gone': finished, failed, cancelled, removed, or never added.
local function classify(member)
  if redis.call('ZSCORE', prioritized, member) or redis.call('ZSCORE', delayed, member) then
    return 'waiting'
  end
  if redis.call('EXISTS', jobPrefix .. member) == 1 then
    if redis.call('LPOS', active, member) then return 'active' end
    return 'gone'
  end
  local rk = recPrefix .. member
  if redis.call('HGET', rk, 'state') == 'queued' then
    local queuedAt = tonumber(redis.call('HGET', rk, 'queuedAt') or '0') or 0
    if now - queuedAt <= grace then return 'pending' end
  end
  return 'gone'
end

local function forget(member)
  local t = redis.call('HGET', teamOfKey, member)
  if t then redis.call('ZREM', teamPrefix .. t, member) end
  redis.call('HDEL', teamOfKey, member)
  redis.call('ZREM', stampsKey, member)
end

local function track(member, t, stamp)
  redis.call('ZADD', stampsKey, stamp, member)
  redis.call('ZADD', teamPrefix .. t, stamp, member)
  redis.call('HSET', teamOfKey, member, t)
end

local kept = redis.call('ZSCORE', stampsKey, id)
if kept then
  if classify(id) ~= 'gone' then return {tonumber(kept), 0} end
  forget(id)
end

-- Virtual time: the lowest stamp still waiting. Gone entries met on the way are dropped (each
-- once), running ones skipped; with nothing waiting, the highest running stamp.
local vt, activeMax = nil, nil
local offset = 0
while vt == nil do
  local batch = redis.call('ZRANGE', stampsKey, offset, offset + 63, 'WITHSCORES')
  if #batch == 0 then break end
  for i = 1, #batch, 2 do
    local member, stamp = batch[i], tonumber(batch[i + 1])
    local state = classify(member)
    if state == 'gone' then
      forget(member)
    elseif state == 'active' then
      offset = offset + 1
      if activeMax == nil or stamp > activeMax then activeMax = stamp end
    else
      vt = stamp
      break
    end
  end
end

-- The team's last stamp: its highest tracked job that is not gone (a cancelled tail is dropped,
-- so a team is never held back by jobs that will not run).
local last = nil
while true do
  local tail = redis.call('ZRANGE', teamKey, -1, -1, 'WITHSCORES')
  if #tail == 0 then break end
  if classify(tail[1]) == 'gone' then
    forget(tail[1])
  else
    last = tonumber(tail[2])
    break
  end
end

local stamp = math.max(vt or activeMax or 1, (last or 0) + 1, 1)
local shift = 0
if stamp > rebaseAt then
  -- Rebase: shift every stamp in use down so the lowest waiting one is 1, in BullMQ's own sets
  -- too (score = priority * 2^32 + insertion counter, bullmq includes/getPriorityScore.lua), so
  -- the order is unchanged. Not while a stamp is pending: its add would carry the old number.
  local all = redis.call('ZRANGE', stampsKey, 0, -1)
  local pending = false
  for _, member in ipairs(all) do
    if classify(member) == 'pending' then pending = true break end
  end
  if not pending then
    shift = (vt or activeMax or stamp) - 1
    local function shifted(p) return math.max(1, p - shift) end
    local function fix(jobId)
      local jobKey = jobPrefix .. jobId
      local p = tonumber(redis.call('HGET', jobKey, 'priority') or '0') or 0
      if p > 0 then redis.call('HSET', jobKey, 'priority', string.format('%.0f', shifted(p))) end
      return p
    end
    local scored = redis.call('ZRANGE', prioritized, 0, -1, 'WITHSCORES')
    for i = 1, #scored, 2 do
      local p = fix(scored[i])
      if p > 0 then
        local counter = tonumber(scored[i + 1]) % 0x100000000
        redis.call('ZADD', prioritized, string.format('%.0f', shifted(p) * 0x100000000 + counter), scored[i])
      end
    end
    for _, jobId in ipairs(redis.call('ZRANGE', delayed, 0, -1)) do fix(jobId) end
    for _, jobId in ipairs(redis.call('LRANGE', active, 0, -1)) do fix(jobId) end
    for _, jobId in ipairs(redis.call('LRANGE', jobPrefix .. 'wait', 0, -1)) do fix(jobId) end
    local tracked = redis.call('ZRANGE', stampsKey, 0, -1, 'WITHSCORES')
    for i = 1, #tracked, 2 do
      local t = redis.call('HGET', teamOfKey, tracked[i])
      if t then track(tracked[i], t, shifted(tonumber(tracked[i + 1]))) else forget(tracked[i]) end
    end
    stamp = shifted(stamp)
  end
end
stamp = math.min(stamp, maxStamp)
track(id, team, stamp)
return {stamp, shift}
`,
);

export interface FairStampOptions {
  /** A reservation whose job never appeared stops counting after this long (as in RESERVE). */
  readonly orphanGraceMs: number;
  /** @defaultValue REBASE_AT */
  readonly rebaseAt?: number;
  /** @defaultValue Date.now() */
  readonly now?: number;
}

/**
 * The BullMQ priority of a job about to be added to its model's queue: its team's turn. Called
 * after RESERVE wrote the record and before the add.
 */
export async function fairStamp(
  client: RedisClient,
  keys: QueueKeys,
  job: { readonly id: string; readonly model: string | undefined; readonly origin: Origin },
  options: FairStampOptions,
): Promise<{ stamp: number; shift: number }> {
  const k = fairKeys(keys, job.model);
  const team = fairTeam(job.origin);
  const reply = await runScript(
    client,
    STAMP,
    [k.stamps, k.teamOf, `${k.teamPrefix}${team}`, keys.record(job.id)],
    [
      job.id,
      team,
      k.teamPrefix,
      k.jobPrefix,
      keys.recordPrefix,
      options.now ?? Date.now(),
      options.orphanGraceMs,
      options.rebaseAt ?? REBASE_AT,
      MAX_STAMP,
    ],
  );
  const [stamp, shift] = Array.isArray(reply) ? reply.map(Number) : [Number.NaN, 0];
  if (stamp === undefined || !Number.isInteger(stamp) || stamp < 1) {
    throw new InternalError(ErrorCode.Redis, `unexpected fair stamp reply ${JSON.stringify(reply)}`);
  }
  return { stamp, shift: shift ?? 0 };
}

/**
 * The BullMQ add options that give a job its team's turn: `{ priority: stamp }`, or nothing with
 * fair sharing off (plain FIFO, as before). Logs a rebase.
 */
export async function fairAddOptions(
  ctx: { readonly client: RedisClient; readonly keys: QueueKeys; readonly logger: QueueLogger },
  job: { readonly id: string; readonly model: string | undefined; readonly origin: Origin },
  options: FairStampOptions & { readonly enabled: boolean },
): Promise<{ priority?: number }> {
  if (!options.enabled) return {};
  const { stamp, shift } = await fairStamp(ctx.client, ctx.keys, job, options);
  if (shift > 0) ctx.logger.info({ jobId: job.id, shift, model: job.model }, 'fair-share stamps rebased');
  return { priority: stamp };
}
