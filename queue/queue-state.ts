import { ErrorCode, UserError } from '../core/errors.ts';
import type { RedisClient } from './connection.ts';
import type { QueueKeys } from './keys.ts';
import { decodeRecord } from './records.ts';
import type { GridRecord } from './types.ts';

/**
 * Reads of the queue's state shared by the parts of the jobs client (submit, cancel, status,
 * re-render): a job's place in the queue, how long until a slot frees up, its record; and what a
 * caller is told while Redis can't be reached.
 */

/** Retry-After of an "unavailable" answer: Redis reconnects within about 2 s of coming back. */
export const UNAVAILABLE_RETRY_AFTER_S = 5;

/** What a caller is told while Redis can't be reached: a 503 with Retry-After, never a 500 or a hang. */
export function unavailableError(cause: unknown): UserError {
  return new UserError(
    ErrorCode.Unavailable,
    `The image service is temporarily unavailable (it can't reach its job queue). Please try again in about ${UNAVAILABLE_RETRY_AFTER_S} seconds.`,
    { cause, retryAfterSeconds: UNAVAILABLE_RETRY_AFTER_S },
  );
}

/** Default time a queue slot takes to free up, before any job has been timed. */
const DEFAULT_JOB_MS = 30_000;

/** Seconds until a slot should free up: about one average job, within sane bounds. */
export async function retryAfterSeconds(client: RedisClient, keys: QueueKeys): Promise<number> {
  const avg = Number((await client.hget(keys.stats, 'avgJobMs')) ?? DEFAULT_JOB_MS);
  const ms = Number.isFinite(avg) && avg > 0 ? avg : DEFAULT_JOB_MS;
  return Math.min(3600, Math.max(5, Math.ceil(ms / 1000)));
}

/**
 * A pipeline's replies, throwing its first error: ioredis resolves a pipeline whose commands failed
 * (timed out, connection lost) with per-command errors, which must not read as "no such key".
 */
export function pipelineReplies(replies: [Error | null, unknown][] | null): unknown[] {
  if (replies === null) throw new Error('Connection is closed.');
  const failed = replies.find(([error]) => error !== null);
  if (failed !== undefined) throw failed[0];
  return replies.map(([, value]) => value);
}

/**
 * Jobs that will start before `id` in its model's queue, as things stand: BullMQ takes the plain
 * wait list first (pushed on the left, taken from the right), then the prioritized set lowest
 * score first (fair sharing's turns, queue/fairness.ts: score = priority * 2^32 + insertion
 * counter). A retry waiting out its backoff comes back with its priority, behind the jobs of its
 * turn and earlier ones; a job in none of these (just taken) is behind everything waiting.
 */
export async function queuePosition(
  client: RedisClient,
  keys: QueueKeys,
  id: string,
  model: string | undefined,
): Promise<number> {
  // Each model has its own queue: the position is among the jobs waiting for the same model.
  const prefix = keys.jobPrefixOf(model);
  const waitKey = `${prefix}wait`;
  const prioritizedKey = `${prefix}prioritized`;
  const replies = pipelineReplies(
    await client
      .pipeline()
      .lpos(waitKey, id)
      .llen(waitKey)
      .zrank(prioritizedKey, id)
      .zcard(prioritizedKey)
      .zscore(`${prefix}delayed`, id)
      .hget(`${prefix}${id}`, 'priority')
      .exec(),
  );
  const [pos, waitLen, rank, prioritizedLen, delayed, priorityText] = replies;
  const waiting = Number(waitLen ?? 0);
  if (typeof pos === 'number') return Math.max(0, waiting - 1 - pos);
  if (typeof rank === 'number') return waiting + rank;
  const priority = Number(priorityText ?? 0);
  if (delayed !== null && Number.isInteger(priority) && priority > 0) {
    return waiting + (await client.zcount(prioritizedKey, '-inf', (priority + 1) * 2 ** 32 - 1));
  }
  return waiting + Number(prioritizedLen ?? 0);
}

export async function loadRecord(
  client: RedisClient,
  keys: QueueKeys,
  id: string,
): Promise<GridRecord | null> {
  return decodeRecord(id, await client.hgetall(keys.record(id)));
}
