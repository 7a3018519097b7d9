import { cp, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TINY_SD } from '../models/tiny-sd.ts';
import { call, type Job, newUser, startTestApp, type TestApp, waitForJob } from './app-helper.ts';

/**
 * `/imagine` without flags runs with the chosen model's own defaults, under the settings people made on
 * purpose: the real app (private Redis, real worker, real tiny-sd models, the playground API). Two
 * copies of the tiny-sd fixture, each with an imagine.json giving it other defaults: `base` (the
 * default model) and `turbo` (1 step, guidance 0, euler_a, as SD-Turbo's are, at a tiny size).
 */

const BASE = { steps: 2, guidance: 5, width: 64, height: 64, scheduler: 'ddim' } as const;
const TURBO = { steps: 1, guidance: 0, width: 128, height: 64, scheduler: 'euler_a' } as const;

type Settings = Job['settings'] & { model: string };

function settingsOf(job: Job): Omit<Settings, 'negative'> {
  const { steps, guidance, sampler, width, height, model } = job.settings as Settings;
  return { steps, guidance, sampler, width, height, model };
}

function expected(d: typeof BASE | typeof TURBO, model: string, over: Partial<Settings> = {}) {
  return {
    steps: d.steps,
    guidance: d.guidance,
    sampler: d.scheduler,
    width: d.width,
    height: d.height,
    model,
    ...over,
  };
}

describe('model defaults for /imagine without flags (playground, real worker, two tiny-sd models)', () => {
  let t: TestApp;
  let dir: string;
  let env: Record<string, string>;
  let user: { cookie: string };
  let turboGrid: Job;

  const imagine = async (text: string): Promise<Job> => {
    const res = await call<{ id: string }>(`${t.url}/api/imagine`, {
      method: 'POST',
      headers: user,
      json: { text },
    });
    expect(res.status).toBe(202);
    return waitForJob(t.url, res.body.id, ['done'], { headers: user });
  };
  const put = async (json: unknown) => {
    const res = await call(`${t.url}/api/settings`, { method: 'PUT', headers: user, json });
    expect(res.status).toBe(200);
  };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'imagine-model-defaults-'));
    for (const [name, defaults] of [
      ['base', BASE],
      ['turbo', TURBO],
    ] as const) {
      await cp(TINY_SD, join(dir, name), { recursive: true });
      await writeFile(join(dir, name, 'imagine.json'), JSON.stringify({ defaults }));
    }
    env = {
      MODELS: `base=${join(dir, 'base')},turbo=${join(dir, 'turbo')}`,
      // The test app sets DEFAULT_STEPS for the demo model; empty means unset, as in .env.
      DEFAULT_STEPS: '',
    };
    t = await startTestApp(env);
    user = await newUser(t.url);
  });
  afterAll(async () => {
    await t?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('--model turbo without other flags runs with turbo’s defaults; no flag: the default model’s', async () => {
    turboGrid = await imagine('/imagine a cat --model turbo');
    expect(settingsOf(turboGrid)).toEqual(expected(TURBO, 'turbo'));
    expect(settingsOf(await imagine('/imagine a cat'))).toEqual(expected(BASE, 'base'));
  });

  it('GET /api/info shows each model’s effective defaults', async () => {
    const info = await call<{ modelDefaults: Record<string, unknown>; defaults: unknown }>(
      `${t.url}/api/info`,
      { headers: user },
    );
    const shown = (d: typeof BASE | typeof TURBO) => ({
      steps: d.steps,
      guidance: d.guidance,
      sampler: d.scheduler,
      width: d.width,
      height: d.height,
    });
    expect(info.body.modelDefaults).toEqual({ base: shown(BASE), turbo: shown(TURBO) });
    expect(info.body.defaults).toEqual(shown(BASE));

    // The settings panel's "default:" hints: the default model's where the team set nothing.
    const settings = await call<{ effective: Record<string, unknown> }>(`${t.url}/api/settings`, {
      headers: user,
    });
    expect(settings.body.effective).toMatchObject({ steps: 2, guidance: 5, sampler: 'ddim' });
  });

  it('a team setting wins over the model’s; the user’s flags win over both; refine keeps the grid’s settings', async () => {
    await put({ steps: 3, sampler: 'euler' });
    try {
      expect(settingsOf(await imagine('/imagine a cat --model turbo'))).toEqual(
        expected(TURBO, 'turbo', { steps: 3, sampler: 'euler' }),
      );
      expect(
        settingsOf(await imagine('/imagine a cat --model turbo --steps 2 --cfg 1.5 --sampler ddim')),
      ).toEqual(expected(TURBO, 'turbo', { steps: 2, guidance: 1.5, sampler: 'ddim' }));
      // The grid made before the team's setting: its buttons keep its own steps, sampler and size.
      const refined = await call<{ id: string }>(`${t.url}/api/jobs/${turboGrid.id}/refine/1`, {
        method: 'POST',
        headers: user,
      });
      expect(refined.status).toBe(202);
      const refine = await waitForJob(t.url, refined.body.id, ['done'], { headers: user });
      expect(refine.kind).toBe('refine');
      expect(settingsOf(refine)).toEqual(expected(TURBO, 'turbo'));
    } finally {
      await put({ steps: null, sampler: null });
    }
  });

  it('DEFAULT_STEPS set in the environment wins over the model’s; a team setting wins over it', async () => {
    await t.stop();
    t = await startTestApp({ ...env, DEFAULT_STEPS: '2' });
    user = await newUser(t.url);
    expect(settingsOf(await imagine('/imagine a cat --model turbo'))).toEqual(
      expected(TURBO, 'turbo', { steps: 2 }),
    );
    await put({ steps: 3 });
    expect(settingsOf(await imagine('/imagine a cat --model turbo'))).toEqual(
      expected(TURBO, 'turbo', { steps: 3 }),
    );
    expect(settingsOf(await imagine('/imagine a cat --model turbo --steps 1'))).toEqual(
      expected(TURBO, 'turbo', { steps: 1 }),
    );
  });
});
