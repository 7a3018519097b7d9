import { Cluster, type ClusterNode, type ClusterOptions, Redis, type RedisOptions } from 'ioredis';

/**
 * How to reach Redis: a URL (`redis://host:port/db`, `rediss://…`), ioredis options (including
 * Sentinel: `{ sentinels: [{ host, port }], name: 'mymaster' }`), or a Cluster (`{ cluster: nodes }`).
 * With a Cluster, the key prefix must be a hash tag (e.g. `{imagine}`) so every key of a queue and
 * of its records lands in one slot, as BullMQ and our Lua scripts need.
 */
export type RedisConnection =
  | string
  | RedisConnectionOptions
  | { readonly cluster: readonly ClusterNode[]; readonly options?: ClusterOptions };

/** ioredis options, less `replyMapping` (the queue layer relies on the default, legacy replies). */
export type RedisConnectionOptions = Omit<RedisOptions, 'replyMapping'>;

export type RedisClient = Redis | Cluster;

function isClusterSpec(
  connection: RedisConnection,
): connection is { readonly cluster: readonly ClusterNode[]; readonly options?: ClusterOptions } {
  return typeof connection === 'object' && 'cluster' in connection && Array.isArray(connection.cluster);
}

/**
 * One ioredis client. `blocking` clients (BullMQ workers, pub/sub) retry commands forever across
 * reconnects (`maxRetriesPerRequest: null`, which BullMQ requires); the others fail a command after
 * ioredis' default retries so a request path (submit) answers instead of hanging while Redis is down.
 */
export function createRedisClient(
  connection: RedisConnection,
  options: { readonly blocking: boolean; readonly name?: string },
): RedisClient {
  const overrides: RedisConnectionOptions = {
    ...(options.blocking ? { maxRetriesPerRequest: null } : {}),
    ...(options.name === undefined ? {} : { connectionName: options.name }),
  };
  if (typeof connection === 'string') return new Redis(connection, overrides);
  if (isClusterSpec(connection)) {
    const clusterOptions = connection.options ?? {};
    const { replyMapping: _ignored, ...redisOptions } = clusterOptions.redisOptions ?? {};
    return new Cluster([...connection.cluster], {
      ...clusterOptions,
      redisOptions: { ...redisOptions, ...overrides },
    });
  }
  const { replyMapping: _ignored, ...redisOptions } = connection as RedisOptions;
  return new Redis({ ...redisOptions, ...overrides });
}

/** Closes a client politely, falling back to a hard disconnect when Redis is gone. */
export async function closeRedisClient(client: RedisClient): Promise<void> {
  if (client.status === 'end') return;
  try {
    await Promise.race([
      client.quit(),
      new Promise((_, reject) => setTimeout(() => reject(new Error('quit timed out')), 2000).unref()),
    ]);
  } catch {
    client.disconnect();
  }
}
