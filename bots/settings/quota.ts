import { ErrorCode, UserError } from '../../core/errors.ts';
import { utcDay } from '../../core/team-settings.ts';
import {
  closeRedisClient,
  createRedisClient,
  type RedisConnection,
  whenConnected,
} from '../../queue/index.ts';
import type { ScopeRef } from './store.ts';

/**
 * Per-user daily image quotas, counted in Redis per (scope, user, UTC day).
 *
 * What "a quota of N images" means: a request is allowed while the user has made fewer than N
 * images in that scope today, and then all of its images count. So a quota of 1 still allows one
 * grid (4 images) a day, a quota of 8 two grids, and a quota of 6 also two (4 + 4 = 8 ≥ 6 after
 * the second). A grid is never cut short to fit what is left.
 *
 * The check and the count are one Lua script, so concurrent requests (several bot processes)
 * never both take the last image. The key expires an hour after the day ends.
 */

const TAKE = `
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
if used >= tonumber(ARGV[1]) then return {0, used} end
used = redis.call('INCRBY', KEYS[1], ARGV[2])
redis.call('EXPIREAT', KEYS[1], ARGV[3])
return {1, used}
`;

export interface QuotaCharge {
  readonly allowed: boolean;
  /** Images counted today, including this request when allowed. */
  readonly used: number;
  /** When the count starts again (ms since the epoch: the next UTC midnight). */
  readonly resetsAt: number;
  /** Gives the images back (the request was not queued after all). */
  refund(): Promise<void>;
}

export class DailyQuota {
  readonly #prefix: string;
  readonly #client;
  #connecting: Promise<void> | undefined;

  constructor(options: { readonly connection: RedisConnection; readonly prefix: string }) {
    this.#prefix = options.prefix;
    this.#client = createRedisClient(options.connection, { blocking: false, name: 'imagine-quota' });
    this.#client.on('error', () => undefined);
    this.#client.defineCommand('imagineQuotaTake', { numberOfKeys: 1, lua: TAKE });
  }

  keyOf(scope: ScopeRef, user: string, day: string): string {
    const where = [scope.surface, scope.workspace, scope.channel ?? '']
      .map((p) => encodeURIComponent(p))
      .join(':');
    return `${this.#prefix}:quota:${where}:${encodeURIComponent(user)}:${day}`;
  }

  /** Counts `images` for the user unless the quota is used up. `quota` ≥ 1. */
  async take(
    scope: ScopeRef,
    user: string,
    images: number,
    quota: number,
    now: number,
  ): Promise<QuotaCharge> {
    const { day, resetsAt } = utcDay(now);
    const key = this.keyOf(scope, user, day);
    const expireAt = Math.ceil(resetsAt / 1000) + 3600;
    const client = this.#client as unknown as {
      imagineQuotaTake(key: string, quota: number, images: number, at: number): Promise<[number, number]>;
    };
    let allowed: number;
    let used: number;
    try {
      // Request-path clients queue nothing while connecting: wait for the connection first.
      await this.#connected();
      [allowed, used] = await client.imagineQuotaTake(key, quota, images, expireAt);
    } catch (error) {
      // Only Redis can fail here: the user is told to retry, as for a submission while Redis is away.
      throw new UserError(
        ErrorCode.Unavailable,
        'The service is temporarily unavailable; try again shortly.',
        {
          cause: error,
          retryAfterSeconds: 5,
        },
      );
    }
    return {
      allowed: allowed === 1,
      used,
      resetsAt,
      refund: async () => {
        if (allowed === 1) await this.#client.decrby(key, images);
      },
    };
  }

  /** One wait for the connection shared by every command sent meanwhile (not one listener each). */
  #connected(): Promise<void> {
    if (this.#client.status === 'ready') return Promise.resolve();
    this.#connecting ??= whenConnected(this.#client).finally(() => {
      this.#connecting = undefined;
    });
    return this.#connecting;
  }

  close(): Promise<void> {
    return closeRedisClient(this.#client);
  }
}
