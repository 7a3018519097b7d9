import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GridHistory } from '../../bots/history/store.ts';
import { ConversationService, type ServiceSettings } from '../../bots/service.ts';
import type { ImagineCommand } from '../../bots/surface.ts';
import { startTestRedis, type TestRedis, uniquePrefix } from '../helpers/redis.ts';
import { FakeJobs } from './fake-jobs.ts';
import { RecordingReply, RecordingSurface } from './recording-surface.ts';
import { SERVICE_SETTINGS } from './service-settings.ts';

/**
 * The history index's Redis frozen (CLIENT PAUSE) or gone (stopped) while a grid is queued: the grid
 * is queued and shown anyway, within the client's command timeout; only its history entry is lost,
 * and that is logged.
 */

const SETTINGS: ServiceSettings = SERVICE_SETTINGS;

let redis: TestRedis;
beforeAll(async () => {
  redis = await startTestRedis();
});
afterAll(async () => {
  await redis.stop().catch(() => undefined);
});

describe('history write during a Redis outage', () => {
  it('frozen, then stopped: the grid is queued and shown; the entry is lost and logged', async () => {
    const warnings: string[] = [];
    const log = {
      debug() {},
      info() {},
      warn: (_obj: object, msg: string) => void warnings.push(msg),
      error() {},
    };
    const history = new GridHistory({
      connection: redis.url,
      prefix: uniquePrefix('hout'),
      ttlMs: 86_400_000,
    });
    const jobs = new FakeJobs({ limits: { perUser: 100, queueDepth: 1000 } });
    const service = new ConversationService({ jobs, settings: SETTINGS, history, log });
    service.attach(new RecordingSurface({}, 'slack'));
    const admin = new Redis(redis.url);
    let n = 0;
    const imagine = async () => {
      const reply = new RecordingReply();
      const started = performance.now();
      const result = await service.imagine(
        {
          surface: 'slack',
          user: 'U1',
          workspace: 'T1',
          channel: 'C1',
          interactionId: `i-${++n}`,
          text: `prompt ${n}`,
        } as ImagineCommand,
        reply,
      );
      return { result, reply, ms: performance.now() - started };
    };
    try {
      const ok = await imagine();
      expect(
        await history.recent({ surface: 'slack', workspace: 'T1', channel: 'C1', user: 'U1' }, 5),
      ).toEqual([ok.result.jobId]);
      expect(warnings).toEqual([]);

      await admin.call('CLIENT', 'PAUSE', '4000', 'ALL');
      const frozen = await imagine();
      expect(frozen.result.jobId).toBeDefined();
      expect(frozen.reply.only('queued')).toHaveLength(1);
      expect(frozen.ms).toBeLessThan(3500);
      expect(warnings).toEqual(['recording history failed']);

      await admin.quit();
      await redis.stop();
      const gone = await imagine();
      expect(gone.result.jobId).toBeDefined();
      expect(gone.reply.only('queued')).toHaveLength(1);
      expect(gone.ms).toBeLessThan(3500);
      expect(warnings).toEqual(['recording history failed', 'recording history failed']);
      // Both grids are there to use; only the index lost them.
      expect(jobs.records.has(frozen.result.jobId!)).toBe(true);
      expect(jobs.records.has(gone.result.jobId!)).toBe(true);
    } finally {
      admin.disconnect();
      await service.close();
      await history.close();
    }
  }, 20_000);
});
