import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { type RedisForTests, uniquePrefix, useTestRedis } from '../helpers/use-redis.ts';

/** The shared test-Redis fixture: a live server per file, per-test cleanups, everything closed after. */

describe('useTestRedis', () => {
  const order: string[] = [];
  let inner: RedisForTests | undefined;
  let innerUrl = '';

  describe('within a file', () => {
    const redis = useTestRedis();
    inner = redis;

    it('gives a running server and an admin client connected to it', async () => {
      innerUrl = redis.url;
      expect(new URL(redis.url).hostname).toBe('127.0.0.1');
      expect(await redis.admin.ping()).toBe('PONG');
      const key = `${uniquePrefix('u')}:k`;
      await redis.admin.set(key, 'v');
      const other = new Redis(redis.url);
      try {
        expect(await other.get(key)).toBe('v');
      } finally {
        other.disconnect();
      }
      redis.cleanups.push(() => void order.push('first'));
      redis.cleanups.push(async () => void order.push('second'));
    });

    it("ran the previous test's cleanups after it, last registered first", () => {
      expect(order).toEqual(['second', 'first']);
      expect(redis.cleanups).toEqual([]);
    });

    it('gives each call of uniquePrefix its own prefix', () => {
      expect(uniquePrefix('q')).not.toBe(uniquePrefix('q'));
    });
  });

  it('closed the admin client and stopped the server when the file (here: the block) ended', async () => {
    expect(inner?.admin.status).toBe('end');
    const probe = new Redis(innerUrl, {
      lazyConnect: true,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
    });
    probe.on('error', () => {});
    try {
      await expect(probe.connect()).rejects.toThrow();
    } finally {
      probe.disconnect();
    }
  });
});
