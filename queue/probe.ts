import { Queue } from 'bullmq';
import { closeRedisClient, createRedisClient, type RedisConnection, whenConnected } from './connection.ts';
import { generateQueueName } from './keys.ts';

/** BullMQ job counts of the generation queue. Missing keys count as 0. */
export interface QueueCounts {
  readonly waiting?: number;
  readonly delayed?: number;
  readonly prioritized?: number;
  readonly active?: number;
  readonly completed?: number;
  readonly failed?: number;
}

/**
 * Read-only view of the shared Redis for health and metrics: PING for `/readyz`, and the generation
 * queue's job counts for the queue-depth gauges. Its own connection, which fails fast while Redis is
 * down (so a probe answers instead of hanging).
 */
export interface QueueProbe {
  ping(): Promise<void>;
  counts(): Promise<QueueCounts>;
  close(): Promise<void>;
}

/** `models`: the served model names, whose queues are counted together. @defaultValue the one `default` model */
export function createQueueProbe(
  connection: RedisConnection,
  prefix: string,
  models: readonly string[] = [],
): QueueProbe {
  const client = createRedisClient(connection, { blocking: false, name: 'imagine-probe' });
  // Errors surface through ping(); the client reconnects by itself. The last one says why it can't
  // connect (refused, WRONGPASS…), which a command's own "not writeable" error would hide.
  let lastError: Error | undefined;
  client.on('error', (error: Error) => {
    lastError = error;
  });
  client.on('ready', () => {
    lastError = undefined;
  });
  const unreachable = (error: unknown): Error => {
    const cause = client.status !== 'ready' && lastError !== undefined ? lastError : error;
    return new Error(`redis unreachable: ${cause instanceof Error ? cause.message : String(cause)}`);
  };
  // One generate queue per model: the gauges count them all.
  const names = [...new Set((models.length === 0 ? [undefined] : models).map(generateQueueName))];
  const queues = names.map((name) => {
    const queue = new Queue(name, { connection: client, prefix });
    queue.on('error', () => {});
    return queue;
  });
  return {
    async ping() {
      // Fails at once while disconnected and within REQUEST_TIMEOUT_MS when Redis hangs.
      const reply = await client.ping().catch((error: unknown) => {
        throw unreachable(error);
      });
      if (reply !== 'PONG') throw new Error(`redis answered ${reply}`);
    },
    async counts() {
      // BullMQ waits for a connection without limit; a scrape must not hang while Redis is away.
      await whenConnected(client).catch((error: unknown) => {
        throw unreachable(error);
      });
      const all = await Promise.all(
        queues.map((q) =>
          q.getJobCounts('waiting', 'delayed', 'prioritized', 'active', 'completed', 'failed'),
        ),
      );
      const total: Record<string, number> = {};
      for (const counts of all) {
        for (const [state, n] of Object.entries(counts)) total[state] = (total[state] ?? 0) + n;
      }
      return total;
    },
    async close() {
      await Promise.all(queues.map((q) => q.close().catch(() => {})));
      await closeRedisClient(client);
    },
  };
}
