import { type Logger as BoltLogger, LogLevel } from '@slack/bolt';
import { CodedError, ErrorCode, InternalError } from '../../core/errors.ts';
import { PermanentDeliveryError, RetryLaterError } from '../../queue/index.ts';
import type { Logger } from '../logger.ts';

/**
 * Slack Web API failures in the project's error shapes: a 429 becomes RetryLaterError with Slack's
 * Retry-After (the delivery retry waits that long), everything else an InternalError[E_CHAT_API]
 * naming the method and Slack's error string.
 */

interface SlackErrorLike {
  readonly code?: unknown;
  readonly retryAfter?: unknown;
  readonly statusCode?: unknown;
  readonly data?: { readonly error?: unknown };
  readonly message?: unknown;
}

/** Slack's `error` string of a platform error (`not_in_channel`, `channel_not_found`…), if it is one. */
export function slackErrorCode(error: unknown): string | undefined {
  const e = error as SlackErrorLike | null;
  if (e === null || typeof e !== 'object') return undefined;
  return e.code === 'slack_webapi_platform_error' && typeof e.data?.error === 'string'
    ? e.data.error
    : undefined;
}

/** Slack errors no retry can fix: the channel or access is gone, or the app lacks a scope. */
const PERMANENT_SLACK_ERRORS = new Set([
  'channel_not_found',
  'is_archived',
  'not_in_channel',
  'missing_scope',
  'no_permission',
  'restricted_action',
  'account_inactive',
  'invalid_auth',
  'not_authed',
  'token_revoked',
  'team_access_not_granted',
]);

export function toChatApiError(method: string, error: unknown): Error {
  if (error instanceof RetryLaterError || error instanceof CodedError) return error;
  const e = (error ?? {}) as SlackErrorLike;
  if (e.code === 'slack_webapi_rate_limited_error') {
    const seconds = typeof e.retryAfter === 'number' && e.retryAfter > 0 ? e.retryAfter : 1;
    return new RetryLaterError(`Slack ${method} rate limited; retry after ${seconds} s`, seconds * 1000, {
      cause: error,
    });
  }
  const platform = slackErrorCode(error);
  const detail =
    platform ??
    (typeof e.statusCode === 'number'
      ? `HTTP ${e.statusCode}`
      : typeof e.message === 'string'
        ? e.message
        : String(error));
  if (platform !== undefined && PERMANENT_SLACK_ERRORS.has(platform)) {
    // Delivery stops instead of retrying for an hour; `cause` keeps Slack's error for callers that inspect it.
    return new PermanentDeliveryError(`Slack ${method} failed: ${platform}`, { cause: error });
  }
  return new InternalError(ErrorCode.ChatApi, `Slack ${method} failed: ${detail}`, {
    cause: error,
    context: { method, ...(platform !== undefined ? { slackError: platform } : {}) },
  });
}

/** Runs one Web API call, mapping its failure. */
export async function slackCall<T>(method: string, run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (error) {
    throw toChatApiError(method, error);
  }
}

const LEVELS: Record<LogLevel, number> = {
  [LogLevel.DEBUG]: 20,
  [LogLevel.INFO]: 30,
  [LogLevel.WARN]: 40,
  [LogLevel.ERROR]: 50,
};

/** bolt's and web-api's logger interface over the project's pino logger. */
export function boltLogger(log: Logger): BoltLogger {
  let child = log.child({ component: 'slack' });
  let level: LogLevel = LogLevel.INFO;
  const line = (msg: unknown[]) => msg.map((m) => (typeof m === 'string' ? m : safeString(m))).join(' ');
  const emit = (at: LogLevel, msg: unknown[]) => {
    if (LEVELS[at] < LEVELS[level]) return;
    child[at](line(msg));
  };
  return {
    debug: (...msg: unknown[]) => emit(LogLevel.DEBUG, msg),
    info: (...msg: unknown[]) => emit(LogLevel.INFO, msg),
    warn: (...msg: unknown[]) => emit(LogLevel.WARN, msg),
    error: (...msg: unknown[]) => emit(LogLevel.ERROR, msg),
    setLevel: (next: LogLevel) => {
      level = next;
    },
    getLevel: () => level,
    setName: (name: string) => {
      child = log.child({ component: 'slack', name });
    },
  };
}

function safeString(value: unknown): string {
  if (value instanceof Error) return `${value.name}: ${value.message}`;
  try {
    return JSON.stringify(value);
  } catch {
    return String(value);
  }
}
