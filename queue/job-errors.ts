import { ErrorCode, InternalError, UserError } from '../core/errors.ts';

/**
 * The coded answers of the Jobs interface, in one place: the Redis-backed jobs throw them, and the
 * test fake throws the same ones, so a chat-side test sees exactly what a user would.
 */

/** A spec that fails validation: says what was wrong. */
export function invalidSpecError(problem: string): UserError {
  return new UserError(ErrorCode.InvalidRequest, `That request can't be run: ${problem}`);
}

/** The user already has `count` unfinished jobs, at or over `limit`. */
export function userCapError(
  count: number,
  limit: number,
  retryAfterSeconds: number,
  context: { id: string; user: string },
): UserError {
  return new UserError(
    ErrorCode.RateLimited,
    `You already have ${count} image ${count === 1 ? 'job' : 'jobs'} queued or running ` +
      `(the limit is ${limit}). Wait for one to finish or cancel one, then try again.`,
    { retryAfterSeconds, context: { ...context, limit } },
  );
}

/** `depth` jobs are unfinished, at or over `limit`. */
export function queueFullError(
  depth: number,
  limit: number,
  retryAfterSeconds: number,
  context: { id: string },
): UserError {
  return new UserError(
    ErrorCode.QueueFull,
    `The queue is full (${depth} jobs waiting or running). Please try again in about ${retryAfterSeconds} seconds.`,
    { retryAfterSeconds, context: { ...context, depth, limit } },
  );
}

/** The job's record never existed or has expired. */
export function jobGoneError(id: string): UserError {
  return new UserError(ErrorCode.NotFound, 'That job no longer exists (it may have expired).', {
    context: { id },
  });
}

function finishedWord(state: string): string {
  switch (state) {
    case 'done':
      return 'finished';
    case 'failed':
      return 'failed';
    default:
      return 'been cancelled';
  }
}

/** A cancel of a job that already ended (`state`: done, failed or cancelled). */
export function alreadyEndedError(id: string, state: string): UserError {
  return new UserError(ErrorCode.AlreadyFinished, `This job has already ${finishedWord(state)}.`, {
    context: { id, state },
  });
}

const SAFE_REF_KEY = /^[A-Za-z0-9_.:-]{1,100}$/u;

/**
 * Checks a message-reference patch before it is stored: keys are short safe names, values strings
 * of at most 4000 characters. A bad one is a programming error on the chat side, not user input.
 */
export function assertMessageRefPatch(patch: Readonly<Record<string, string>>): void {
  for (const [key, value] of Object.entries(patch)) {
    if (!SAFE_REF_KEY.test(key) || typeof value !== 'string' || value.length > 4000) {
      throw new InternalError(ErrorCode.Internal, `invalid messageRef entry ${JSON.stringify(key)}`);
    }
  }
}
