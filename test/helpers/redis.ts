import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type RedisHandle, startRedis } from '../../queue/redis-launcher.ts';

export interface TestRedis {
  readonly url: string;
  stop(): Promise<void>;
}

/** A private redis-server in a temp dir (or REDIS_URL when the runner provides one). */
export async function startTestRedis(): Promise<TestRedis> {
  const dataDir = await mkdtemp(join(tmpdir(), 'imagine-redis-'));
  let handle: RedisHandle;
  try {
    handle = await startRedis({ url: process.env.TEST_REDIS_URL, dataDir });
  } catch (error) {
    await rm(dataDir, { recursive: true, force: true });
    throw error;
  }
  return {
    url: handle.url,
    stop: async () => {
      await handle.stop();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

/** One unique queue/key prefix per test so tests can share a server and run in parallel. */
export function uniquePrefix(label = 't'): string {
  return `${label}-${randomBytes(6).toString('hex')}`;
}
