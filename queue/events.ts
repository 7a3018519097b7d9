import { reportError } from '../core/errors.ts';
import type { Surface } from '../core/jobspec.ts';
import { createRedisClient, type RedisClient, type RedisConnection, settleWithin } from './connection.ts';
import type { QueueKeys } from './keys.ts';
import type { QueueLogger } from './logger.ts';
import type { ProgressEvent, Subscription } from './types.ts';

/** Longest wait for BullMQ's queues and consumers to close before their connections are dropped. */
export const CLOSE_TIMEOUT_MS = 5000;

export interface JobEvents {
  /** The one pub/sub connection, made on first use. */
  ensureSubscriber(): RedisClient;
  onProgress(surface: Surface, handler: (event: ProgressEvent) => void): Subscription;
  /** Drops the handlers; returns the subscriber (if made) for the caller to close. */
  close(): RedisClient | undefined;
}

/**
 * Lossy events from the workers, over one pub/sub connection: progress per surface, and
 * re-render endings (handed to `onRendered`).
 */
export function createJobEvents(options: {
  connection: RedisConnection;
  keys: QueueKeys;
  logger: QueueLogger;
  isClosed: () => boolean;
  onRendered: (text: string) => void;
}): JobEvents {
  const { keys, logger } = options;
  let subscriber: RedisClient | undefined;
  const progressHandlers = new Map<string, Set<(event: ProgressEvent) => void>>();

  function ensureSubscriber(): RedisClient {
    if (subscriber !== undefined) return subscriber;
    const sub = createRedisClient(options.connection, { blocking: true });
    sub.on('error', (error) => logger.warn({ err: error }, 'redis connection error (progress)'));
    sub.on('message', (channel: string, message: string) => {
      if (channel === keys.renderedChannel) {
        options.onRendered(message);
        return;
      }
      const handlers = progressHandlers.get(channel);
      if (handlers === undefined || handlers.size === 0) return;
      let event: ProgressEvent;
      try {
        const raw = JSON.parse(message) as {
          jobId: string;
          surface: Surface;
          step: number;
          total: number;
          preview?: string;
        };
        event = {
          jobId: raw.jobId,
          surface: raw.surface,
          step: raw.step,
          total: raw.total,
          ...(typeof raw.preview === 'string' ? { preview: Buffer.from(raw.preview, 'base64') } : {}),
        };
      } catch (error) {
        logger.warn({ err: error, channel }, 'unreadable progress message dropped');
        return;
      }
      for (const handler of handlers) {
        try {
          handler(event);
        } catch (error) {
          reportError(logger, error, { jobId: event.jobId, where: 'progress handler' });
        }
      }
    });
    subscriber = sub;
    return sub;
  }

  function onProgress(surface: Surface, handler: (event: ProgressEvent) => void): Subscription {
    const channel = keys.progressChannel(surface);
    let handlers = progressHandlers.get(channel);
    if (handlers === undefined) {
      handlers = new Set();
      progressHandlers.set(channel, handlers);
      ensureSubscriber()
        .subscribe(channel)
        .catch((error: unknown) => reportError(logger, error, { channel, where: 'progress subscribe' }));
    }
    handlers.add(handler);
    return {
      close: async () => {
        const set = progressHandlers.get(channel);
        set?.delete(handler);
        if (set !== undefined && set.size === 0 && subscriber !== undefined && !options.isClosed()) {
          progressHandlers.delete(channel);
          // The subscriber retries forever while Redis is gone: don't wait on it past the bound.
          await settleWithin(subscriber.unsubscribe(channel), CLOSE_TIMEOUT_MS);
        }
      },
    };
  }

  function close(): RedisClient | undefined {
    progressHandlers.clear();
    return subscriber;
  }

  return { ensureSubscriber, onProgress, close };
}
