import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { describeInitImage } from '../../queue/init-images.ts';
import { createJobs } from '../../queue/jobs.ts';
import { queueKeys } from '../../queue/keys.ts';
import { uniquePrefix, useTestRedis } from '../helpers/use-redis.ts';
import { spawnChild } from './child.ts';
import { captureLogger, makeSpec, recordDeliveries, waitFor } from './helpers.ts';

/**
 * An image-prompt (image-to-image) job whose worker process is killed -9 mid-job: another worker takes
 * it over after the stall interval, reads the uploaded picture again from the store, and it is
 * delivered once; the picture is still stored for later rerolls.
 */

const redis = useTestRedis();
const { cleanups } = redis;

describe('crash during an image-to-image job', () => {
  it('is taken over by another worker, which reads the picture again, and delivered once', async () => {
    const prefix = uniquePrefix('ci');
    const jobs = createJobs({
      connection: redis.url,
      prefix,
      logger: captureLogger(),
      delivery: { stalledIntervalMs: 300, lockDurationMs: 1000, backoffMs: 50 },
    });
    cleanups.push(() => jobs.close());
    const deliveries = recordDeliveries(jobs);
    const worker = (id: string, stepDelayMs: number) => {
      const child = spawnChild('./worker-child.ts', {
        url: redis.url,
        prefix,
        workerId: id,
        stepDelayMs,
        lockDurationMs: 1000,
        stalledIntervalMs: 400,
      });
      cleanups.push(() => child.kill('SIGKILL'));
      return child;
    };
    const bytes = await sharp({ create: { width: 64, height: 64, channels: 3, background: '#227744' } })
      .png()
      .toBuffer();
    const init = await describeInitImage(bytes);
    const a = worker('child-a', 50);
    await a.waitFor((line) => line.event === 'ready');
    const { jobId } = await jobs.submit(
      { ...makeSpec({ steps: 60 }), v: 2, init, strength: 0.8 },
      { initImage: bytes },
    );
    await a.waitFor((line) => line.event === 'step' && Number(line.step) >= 3);
    await a.kill('SIGKILL');
    expect(await jobs.status(jobId)).toMatchObject({ state: 'running' });

    const b = worker('child-b', 2);
    await b.waitFor((line) => line.event === 'ready');
    await waitFor('taken-over job done', async () => (await jobs.status(jobId))?.state === 'done', 20_000);
    const record = await jobs.record(jobId);
    expect(record?.state.worker).toBe('child-b');
    expect(record?.state.attempts).toBe(2);
    expect(record?.spec.init).toEqual(init);
    await waitFor('delivered', () => deliveries.delivered.length === 1);
    await new Promise((r) => setTimeout(r, 300));
    expect(deliveries.delivered).toHaveLength(1);
    expect((await redis.admin.getBuffer(queueKeys(prefix).initImage(init.sha256)))?.equals(bytes)).toBe(true);
  }, 40_000);
});
