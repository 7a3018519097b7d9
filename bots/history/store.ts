import {
  closeRedisClient,
  createRedisClient,
  type RedisConnection,
  whenConnected,
} from '../../queue/index.ts';
import type { HistoryIndex, HistoryScope } from '../service/history.ts';

/**
 * Each user's recent grids per channel, in Redis: one sorted set per (surface, workspace, channel,
 * user), member = record id, score = when it was submitted (ms).
 *
 * Why here in bots/ and not behind the queue's Jobs interface: "my grids in this channel" is the
 * conversation's notion (scopes, users, what `/imagine history` shows); the queue knows records by id
 * and nothing of channels or who asks for a list. Like the team settings store, it reaches Redis
 * through queue/index.ts's client factory under the deployment's QUEUE_PREFIX, and holds no copy of a
 * record: the record stays the one source (and its TTL decides what still works), so an id whose
 * record expired is skipped, and dropped, when read.
 */

export interface GridHistoryOptions {
  readonly connection: RedisConnection;
  /** QUEUE_PREFIX. */
  readonly prefix: string;
  /**
   * How long an index lives after its last write: the record TTL (RECORD_TTL_DAYS), plus a day, since
   * a record's TTL starts only once its job finished.
   */
  readonly ttlMs: number;
  /** Entries kept per index, newest first. @defaultValue 25 */
  readonly maxEntries?: number;
}

export const GRID_HISTORY_DEFAULTS = { maxEntries: 25 } as const satisfies Partial<GridHistoryOptions>;

export class GridHistory implements HistoryIndex {
  readonly #prefix: string;
  readonly #ttlMs: number;
  readonly #max: number;
  readonly #client;
  #connecting: Promise<void> | undefined;

  constructor(options: GridHistoryOptions) {
    this.#prefix = options.prefix;
    this.#ttlMs = Math.max(1, Math.round(options.ttlMs));
    this.#max = options.maxEntries ?? GRID_HISTORY_DEFAULTS.maxEntries;
    this.#client = createRedisClient(options.connection, { blocking: false, name: 'imagine-history' });
    // Failures surface through the commands; the event would be "unhandled".
    this.#client.on('error', () => undefined);
  }

  /** The index's key. Ids are encoded, so no id can reach into another scope's or user's key. */
  keyOf(scope: HistoryScope): string {
    const parts = [scope.surface, scope.workspace, scope.channel, scope.user].map(encodeURIComponent);
    return `${this.#prefix}:history:${parts.join(':')}`;
  }

  async add(scope: HistoryScope, recordId: string, at: number): Promise<void> {
    const key = this.keyOf(scope);
    await this.#connected();
    const replies = await this.#client
      .multi()
      .zadd(key, at, recordId)
      // Keep the newest `max`: ranks go up with time, so drop ranks 0 .. -(max + 1).
      .zremrangebyrank(key, 0, -(this.#max + 1))
      .pexpire(key, this.#ttlMs)
      .exec();
    const failed = replies?.find(([error]) => error !== null)?.[0];
    if (failed) throw failed;
  }

  async recent(scope: HistoryScope, limit: number): Promise<string[]> {
    await this.#connected();
    return this.#client.zrevrange(this.keyOf(scope), 0, Math.max(0, limit - 1));
  }

  async forget(scope: HistoryScope, recordIds: readonly string[]): Promise<void> {
    if (recordIds.length === 0) return;
    await this.#connected();
    await this.#client.zrem(this.keyOf(scope), ...recordIds);
  }

  /** One wait for the connection shared by every command sent meanwhile. */
  #connected(): Promise<void> {
    if (this.#client.status === 'ready') return Promise.resolve();
    this.#connecting ??= whenConnected(this.#client).finally(() => {
      this.#connecting = undefined;
    });
    return this.#connecting;
  }

  async close(): Promise<void> {
    await closeRedisClient(this.#client);
  }
}
