import { Redis } from 'ioredis';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErrorCode, UserError } from '../../core/errors.ts';
import { jobIdFor } from '../../core/jobspec.ts';
import { describeInitImage } from '../../queue/init-images.ts';
import { createJobs } from '../../queue/jobs.ts';
import { queueKeys } from '../../queue/keys.ts';
import { startTestRedis, type TestRedis, uniquePrefix } from '../helpers/redis.ts';
import { captureLogger, makeSpec } from './helpers.ts';

/**
 * An image prompt submitted while Redis is frozen (CLIENT PAUSE): the caller is told "temporarily
 * unavailable" within the client's timeouts, and once Redis answers again nothing of that submission
 * exists (no record, no user slot, no BullMQ job): never a job without its picture. The next submit works
 * and stores the picture, although the model's BullMQ queue was first used during the freeze (BullMQ
 * keeps a Queue's failed start forever; queue/queue-cache.ts).
 */

let redis: TestRedis;
let admin: Redis;
beforeAll(async () => {
  redis = await startTestRedis();
  admin = new Redis(redis.url);
});
afterAll(async () => {
  admin.disconnect();
  await redis.stop();
});

describe('image prompt submit during a Redis freeze', () => {
  it('answers E_UNAVAILABLE and leaves nothing behind; then works', async () => {
    const prefix = uniquePrefix('iout');
    const keys = queueKeys(prefix);
    const jobs = createJobs({ connection: redis.url, prefix, logger: captureLogger() });
    try {
      const bytes = await sharp({ create: { width: 32, height: 32, channels: 3, background: '#3366aa' } })
        .png()
        .toBuffer();
      const init = await describeInitImage(bytes);
      const spec = { ...makeSpec({ user: 'u1' }), v: 2 as const, init, strength: 0.5 };
      // Warm the connection so the freeze hits the submit itself.
      await jobs.status('discord-none').catch(() => undefined);
      await admin.call('CLIENT', 'PAUSE', '3000', 'ALL');
      const started = performance.now();
      const error = await jobs.submit(spec, { initImage: bytes }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(UserError);
      expect((error as UserError).code).toBe(ErrorCode.Unavailable);
      expect((error as UserError).message).toMatch(/temporarily unavailable/u);
      expect(performance.now() - started).toBeLessThan(5000);
      // Once Redis answers again (after the pause), whatever was buffered has run.
      await new Promise((resolve) => setTimeout(resolve, 3200));
      const id = jobIdFor('discord', spec.origin.interactionId);
      expect(await admin.exists(keys.record(id))).toBe(0);
      expect(await admin.sismember(keys.userJobs('discord', 'u1'), id)).toBe(0);
      expect(await admin.exists(`${keys.generateJobPrefix}${id}`)).toBe(0);

      const again = { ...spec, origin: { ...spec.origin, interactionId: 'again' } };
      // The model's queue was first used during the freeze: BullMQ's failed start must not stick.
      const ok = await jobs.submit(again, { initImage: bytes });
      expect(ok.duplicate).toBe(false);
      expect((await admin.getBuffer(keys.initImage(init.sha256)))?.equals(bytes)).toBe(true);
      expect(await admin.exists(`${keys.generateJobPrefix}${ok.jobId}`)).toBe(1);
    } finally {
      await jobs.close();
    }
  }, 20_000);
});
