import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { modelFolderFacts } from '../../models/revision.ts';
import { queueKeys } from '../../queue/keys.ts';
import { TINY_SD, TINY_SD2 } from '../models/tiny-sd.ts';
import {
  call,
  type Job,
  newUser,
  pngTextChunks,
  startTestApp,
  type TestApp,
  waitForJob,
} from './app-helper.ts';

/** A job as the API shows it, with the model fields this test reads. */
type ModelJob = Job & {
  settings: Job['settings'] & { model: string };
  model: { name: string; demo: boolean; revision?: string; label?: string } | null;
};

async function parametersOf(url: string, headers: Record<string, string>): Promise<string> {
  const response = await fetch(url, { headers });
  expect(response.status).toBe(200);
  return pngTextChunks(Buffer.from(await response.arrayBuffer())).get('parameters') ?? '';
}

/**
 * Two real models (the tiny SD 1.x and SD 2.x fixtures) served by one deployment: the real app with
 * its private Redis, one worker serving both on their own queues within a memory budget that holds
 * only one of them, and the playground API.
 */
describe('several models in one deployment (playground, real queue and worker, tiny-sd + tiny-sd2)', () => {
  let t: TestApp;
  let redisDir: string;
  const env: Record<string, string> = {};
  let sd1: { revision: string; weightBytes: number };
  let sd2: { revision: string; weightBytes: number };

  beforeAll(async () => {
    sd1 = await modelFolderFacts(TINY_SD);
    sd2 = await modelFolderFacts(TINY_SD2);
    redisDir = await mkdtemp(join(tmpdir(), 'imagine-models-redis-'));
    // Room for the larger model alone, not for both: every switch unloads the other.
    const budgetMb = Math.ceil(Math.max(sd1.weightBytes, sd2.weightBytes) / 2 ** 20);
    expect(sd1.weightBytes + sd2.weightBytes).toBeGreaterThan(budgetMb * 2 ** 20);
    Object.assign(env, {
      REDIS_DATA_DIR: redisDir,
      MODELS: `sd1=${TINY_SD},sd2=${TINY_SD2}`,
      MODEL_MEMORY_MB: String(budgetMb),
      DEFAULT_WIDTH: '64',
      DEFAULT_HEIGHT: '64',
      DEFAULT_STEPS: '2',
      DEFAULT_SAMPLER: 'euler',
    });
    t = await startTestApp(env);
  });
  afterAll(async () => {
    await t?.stop();
    await rm(redisDir, { recursive: true, force: true });
  });

  let sd2Grid: ModelJob;
  let sd1Grid: ModelJob;
  let user: { cookie: string };

  it('--model picks the model: the record and the PNG parameters name it; no flag: the default', async () => {
    user = await newUser(t.url);
    const info = await call<{ models: string[] }>(`${t.url}/api/info`, { headers: user });
    expect(info.body.models).toEqual(['sd1', 'sd2']);

    const picked = await call<{ id: string }>(`${t.url}/api/imagine`, {
      method: 'POST',
      headers: user,
      json: { text: '/imagine a red fox --model sd2 --seed 7' },
    });
    expect(picked.status).toBe(202);
    sd2Grid = (await waitForJob(t.url, picked.body.id, ['done'], { headers: user })) as ModelJob;
    expect(sd2Grid.settings.model).toBe('sd2');
    expect(sd2Grid.model).toEqual({ name: 'sd2', demo: false, revision: sd2.revision, label: 'tiny-sd2' });
    const parameters = await parametersOf(`${t.url}${sd2Grid.images[0]}`, user);
    expect(parameters).toContain(`Model hash: ${sd2.revision}, Model: sd2`);

    const plain = await call<{ id: string }>(`${t.url}/api/imagine`, {
      method: 'POST',
      headers: user,
      json: { prompt: 'a red fox', seed: 7 },
    });
    sd1Grid = (await waitForJob(t.url, plain.body.id, ['done'], { headers: user })) as ModelJob;
    expect(sd1Grid.settings.model).toBe('sd1');
    expect(sd1Grid.model).toEqual({ name: 'sd1', demo: false, revision: sd1.revision, label: 'tiny-sd' });
    expect(await parametersOf(`${t.url}${sd1Grid.images[0]}`, user)).toContain(`Model: sd1`);
    // The budget holds one model: running sd1 after sd2 unloaded sd2.
    expect(t.logs()).toContain('model unloaded to stay within MODEL_MEMORY_MB');
  });

  it('a job polled as it finishes never reads done without its model and result', async () => {
    // Tight pollers around the moment the worker ends the job: the status and the record are two reads,
    // and a done status must never come with a record read before the result was written.
    const seen: ModelJob[] = [];
    for (const seed of [11, 12, 13]) {
      const res = await call<{ id: string }>(`${t.url}/api/imagine`, {
        method: 'POST',
        headers: user,
        json: { text: `a grey heron --model sd2 --seed ${seed}` },
      });
      expect(res.status).toBe(202);
      const poll = async () => {
        for (;;) {
          const job = await call<ModelJob>(`${t.url}/api/jobs/${res.body.id}`, { headers: user });
          if (job.body.status === 'done') {
            seen.push(job.body);
            return;
          }
          expect(job.body.status).toMatch(/^(queued|running)$/u);
        }
      };
      await Promise.all([poll(), poll(), poll(), poll()]);
    }
    expect(seen).toHaveLength(12);
    for (const job of seen) {
      expect(job.model).toEqual({ name: 'sd2', demo: false, revision: sd2.revision, label: 'tiny-sd2' });
    }
  });

  it('an unknown model is a 400 that lists the served ones', async () => {
    for (const json of [{ text: 'a red fox --model sdxl' }, { prompt: 'a red fox', model: 'sdxl' }]) {
      const res = await call<{ error: { code: string; message: string } }>(`${t.url}/api/imagine`, {
        method: 'POST',
        headers: user,
        json,
      });
      expect(res.status).toBe(400);
      expect(res.body.error).toEqual({
        code: 'E_UNKNOWN_MODEL',
        message: 'Unknown model `sdxl`. This deployment serves: sd1, sd2 (the first is the default).',
      });
    }
  });

  it('refine and reroll keep the grid’s model, not the default', async () => {
    const refined = await call<{ id: string }>(`${t.url}/api/jobs/${sd2Grid.id}/refine/1`, {
      method: 'POST',
      headers: user,
    });
    expect(refined.status).toBe(202);
    const refine = (await waitForJob(t.url, refined.body.id, ['done'], { headers: user })) as ModelJob;
    expect(refine.kind).toBe('refine');
    expect(refine.settings.model).toBe('sd2');
    expect(refine.model?.revision).toBe(sd2.revision);
    expect(await parametersOf(`${t.url}${refine.images[0]}`, user)).toContain('Model: sd2');

    const rerolled = await call<{ id: string }>(`${t.url}/api/jobs/${sd2Grid.id}/reroll`, {
      method: 'POST',
      headers: user,
    });
    const reroll = (await waitForJob(t.url, rerolled.body.id, ['done'], { headers: user })) as ModelJob;
    expect(reroll.settings.model).toBe('sd2');
    expect(reroll.model?.name).toBe('sd2');
  });

  it('a team’s default model (the settings’ model) applies when it is served; --model still wins', async () => {
    const put = (json: unknown) => call(`${t.url}/api/settings`, { method: 'PUT', headers: user, json });
    expect((await put({ model: 'sd2' })).status).toBe(200);
    try {
      const plain = await call<{ id: string }>(`${t.url}/api/imagine`, {
        method: 'POST',
        headers: user,
        json: { text: 'a grey wolf' },
      });
      const job = (await waitForJob(t.url, plain.body.id, ['done'], { headers: user })) as ModelJob;
      expect(job.settings.model).toBe('sd2');
      const asked = await call<{ id: string }>(`${t.url}/api/imagine`, {
        method: 'POST',
        headers: user,
        json: { text: 'a grey wolf --model sd1' },
      });
      const chosen = (await waitForJob(t.url, asked.body.id, ['done'], { headers: user })) as ModelJob;
      expect(chosen.settings.model).toBe('sd1');
    } finally {
      expect((await put({ model: null })).status).toBe(200);
    }
  });

  it('U on a grid whose PNGs were dropped makes them again on the grid’s model: the same bytes', async () => {
    const before = Buffer.from(
      await (await fetch(`${t.url}${sd2Grid.images[0]}`, { headers: user })).arrayBuffer(),
    );
    const redis = new Redis(String(t.app.redis));
    try {
      const keys = queueKeys('imagine');
      const dropped = [keys.grid(sd2Grid.id), ...[0, 1, 2, 3].map((k) => keys.image(sd2Grid.id, k))];
      expect(await redis.del(...dropped)).toBe(5);
    } finally {
      redis.disconnect();
    }
    const u1 = await call<{ image: string }>(`${t.url}/api/jobs/${sd2Grid.id}/upscale/1`, {
      method: 'POST',
      headers: user,
    });
    expect(u1.status).toBe(200);
    const again = Buffer.from(
      await (await fetch(`${t.url}${u1.body.image}`, { headers: user })).arrayBuffer(),
    );
    expect(again.equals(before)).toBe(true);
  });

  it('after a restart without sd1 (and sd2 now the default): sd1’s grid says its model is gone, sd2’s still refines', async () => {
    await t.stop();
    t = await startTestApp({ ...env, MODELS: `sd2=${TINY_SD2}` });
    const gone = await call<{ error: { code: string; message: string } }>(
      `${t.url}/api/jobs/${sd1Grid.id}/refine/1`,
      { method: 'POST', headers: user },
    );
    expect(gone.status).toBe(410);
    expect(gone.body.error.code).toBe('E_MODEL_GONE');
    expect(gone.body.error.message).toContain(
      'made with the model `sd1`, which this deployment no longer serves',
    );

    const kept = await call<{ id: string }>(`${t.url}/api/jobs/${sd2Grid.id}/refine/2`, {
      method: 'POST',
      headers: user,
    });
    expect(kept.status).toBe(202);
    const refine = (await waitForJob(t.url, kept.body.id, ['done'], { headers: user })) as ModelJob;
    expect(refine.settings.model).toBe('sd2');
    expect(refine.model?.revision).toBe(sd2.revision);
  });
});
