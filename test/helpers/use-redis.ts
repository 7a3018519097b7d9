import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll } from 'vitest';
import { startTestRedis, type TestRedis } from './redis.ts';

export { uniquePrefix } from './redis.ts';

/** What `useTestRedis()` gives a test file. `url` and `admin` are there once its beforeAll has run. */
export interface RedisForTests {
  /** The private server's URL. */
  readonly url: string;
  /** A plain client on that server, for reading and setting keys behind the code under test. */
  readonly admin: Redis;
  /**
   * Closes to run after the current test, last registered first (a worker before the jobs it uses).
   * Any left when the file ends run then, before the server stops.
   */
  readonly cleanups: (() => Promise<unknown> | unknown)[];
}

/**
 * One private redis-server for the test file (started on a free loopback port in beforeAll), an admin
 * client on it, and per-test cleanups; everything is closed again in afterEach/afterAll. Tests share
 * the server, so each gives its queue its own prefix (`uniquePrefix`).
 */
export function useTestRedis(): RedisForTests {
  let server: TestRedis | undefined;
  let admin: Redis | undefined;
  const cleanups: (() => Promise<unknown> | unknown)[] = [];

  // Every close runs even when one fails; the first failure then fails the hook.
  const runCleanups = async (): Promise<void> => {
    const failures: unknown[] = [];
    for (const cleanup of cleanups.splice(0).reverse()) {
      try {
        await cleanup();
      } catch (error) {
        failures.push(error);
      }
    }
    if (failures.length > 0) throw failures[0];
  };

  beforeAll(async () => {
    server = await startTestRedis();
    admin = new Redis(server.url);
  });
  afterEach(runCleanups);
  afterAll(async () => {
    try {
      await runCleanups();
    } finally {
      admin?.disconnect();
      await server?.stop();
    }
  });

  const started = <T>(value: T | undefined, what: string): T => {
    if (value === undefined) throw new Error(`useTestRedis: ${what} exists only once its beforeAll has run`);
    return value;
  };
  return {
    get url() {
      return started(server, 'the server').url;
    },
    get admin() {
      return started(admin, 'the admin client');
    },
    cleanups,
  };
}
