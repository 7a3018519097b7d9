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
 * Longest wait of a request-path command (submit, status, /readyz) for Redis before the caller is
 * told the service is unavailable: a hung Redis (no reply) answers as fast as a closed one.
 */
export const REQUEST_TIMEOUT_MS = 2000;

/**
 * One ioredis client. `blocking` clients (BullMQ workers, pub/sub, delivery consumers) retry
 * commands forever across reconnects (`maxRetriesPerRequest: null`, which BullMQ requires). The
 * others serve requests: while Redis is unreachable their commands fail at once (no offline queue)
 * or after REQUEST_TIMEOUT_MS (no reply), and a command whose caller got that failure is never
 * sent again after a reconnect (no resend), so nothing a caller was told failed runs later. They
 * reconnect by themselves as before.
 */
export function createRedisClient(
  connection: RedisConnection,
  options: { readonly blocking: boolean; readonly name?: string },
): RedisClient {
  const overrides: RedisConnectionOptions = {
    ...(options.blocking
      ? { maxRetriesPerRequest: null }
      : {
          enableOfflineQueue: false,
          autoResendUnfulfilledCommands: false,
          commandTimeout: REQUEST_TIMEOUT_MS,
        }),
    ...(options.name === undefined ? {} : { connectionName: options.name }),
  };
  if (typeof connection === 'string') return new Redis(connection, overrides);
  if (isClusterSpec(connection)) {
    const clusterOptions = connection.options ?? {};
    const { replyMapping: _ignored, ...redisOptions } = clusterOptions.redisOptions ?? {};
    return new Cluster([...connection.cluster], {
      ...clusterOptions,
      ...(options.blocking ? {} : { enableOfflineQueue: false }),
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

/** Waits for `work` to settle, or `ms` at most; never rejects. Resolves to whether it settled in time. */
export async function settleWithin(work: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([
      work.then(
        () => true,
        () => true,
      ),
      timeout,
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Redis replies that mean "not now" rather than "wrong command": loading, busy, failing over. */
const UNAVAILABLE_REPLY = /^(LOADING|BUSY|MASTERDOWN|CLUSTERDOWN|TRYAGAIN|READONLY)\b/u;

/**
 * Whether an error from a request-path command means Redis could not be reached or did not answer
 * (as opposed to a bug or a bad reply): connection closed or refused, no reply within the timeout,
 * or a Redis that is loading or failing over.
 */
export function isUnavailableError(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  if (error.name === 'MaxRetriesPerRequestError') return true;
  if (error.name === 'ReplyError') return UNAVAILABLE_REPLY.test(error.message);
  const code = (error as NodeJS.ErrnoException).code;
  if (
    typeof code === 'string' &&
    /^(ECONNREFUSED|ECONNRESET|ETIMEDOUT|EPIPE|EHOSTUNREACH|ENETUNREACH|ENOTFOUND|EAI_AGAIN)$/u.test(code)
  )
    return true;
  return /^(Connection is closed|Stream isn't writeable|Command timed out|Redis is not connected)/u.test(
    error.message,
  );
}

/**
 * Resolves once `client` can take commands: at once when it is connected, else when it connects
 * within `timeoutMs`; otherwise rejects with an error `isUnavailableError` recognises.
 */
export function whenConnected(client: RedisClient, timeoutMs = REQUEST_TIMEOUT_MS): Promise<void> {
  if (client.status === 'ready') return Promise.resolve();
  return new Promise((resolve, reject) => {
    const done = (error?: Error): void => {
      clearTimeout(timer);
      client.off('ready', onReady);
      client.off('end', onEnd);
      if (error === undefined) resolve();
      else reject(error);
    };
    const onReady = (): void => done();
    const onEnd = (): void => done(new Error('Connection is closed.'));
    const timer = setTimeout(() => done(new Error(`Redis is not connected (${client.status})`)), timeoutMs);
    client.once('ready', onReady);
    client.once('end', onEnd);
  });
}
