import { randomBytes } from 'node:crypto';
import { ErrorCode } from '../../core/errors.ts';
import {
  closeRedisClient,
  createRedisClient,
  type RedisConnection,
  whenConnected,
} from '../../queue/index.ts';
import { HttpError } from '../ops/http.ts';

/** Where the identity-signing secret lives: one per deployment (QUEUE_PREFIX), never expiring. */
export function identitySecretKey(prefix: string): string {
  return `${prefix}:web:identity-secret`;
}

/** Longest wait for Redis before the request is answered 503 (and the next one tries again). */
const SECRET_TIMEOUT_MS = 5000;

/**
 * The secret that signs playground identities, kept in Redis so that cookies stay valid across
 * restarts and across bot processes sharing one Redis. The first process to need it creates it
 * (`SET NX`, so concurrent first starts agree on one); everyone reads it back. Rotating it (deleting
 * the key) signs everyone out: each browser is issued a new identity on its next request.
 */
export function redisIdentitySecret(connection: RedisConnection, prefix: string): () => Promise<Buffer> {
  const key = identitySecretKey(prefix);
  return async () => {
    const client = createRedisClient(connection, { blocking: false, name: 'imagine-web-identity' });
    // Failures surface through the commands below; the event would otherwise be "unhandled".
    client.on('error', () => undefined);
    let timer: NodeJS.Timeout | undefined;
    try {
      const read = (async () => {
        // Request-path clients queue nothing while connecting: wait for the connection first.
        await whenConnected(client, SECRET_TIMEOUT_MS);
        await client.set(key, randomBytes(32).toString('hex'), 'NX');
        const value = await client.get(key);
        if (value === null || !/^[0-9a-f]{64}$/u.test(value)) throw new Error(`${key} holds no valid secret`);
        return Buffer.from(value, 'hex');
      })();
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () =>
            reject(
              new HttpError(
                ErrorCode.Unavailable,
                'The playground cannot reach its database right now; try again.',
              ),
            ),
          SECRET_TIMEOUT_MS,
        );
      });
      read.catch(() => undefined);
      return await Promise.race([read, timeout]);
    } catch (error) {
      if (error instanceof HttpError) throw error;
      // What went wrong stays out of the answer (it may name the Redis URL); the caller may retry.
      throw new HttpError(
        ErrorCode.Unavailable,
        'The playground cannot read its signing secret right now; try again.',
      );
    } finally {
      clearTimeout(timer);
      await closeRedisClient(client);
    }
  };
}
