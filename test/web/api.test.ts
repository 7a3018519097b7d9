import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_SUFFIXES } from '../../core/config.ts';
import {
  call,
  type Job,
  newUser,
  pngTextChunks,
  startTestApp,
  type TestApp,
  waitForJob,
} from './app-helper.ts';

async function png(url: string, headers: Record<string, string> = {}): Promise<Buffer> {
  const response = await fetch(url, { headers });
  expect(response.status).toBe(200);
  expect(response.headers.get('content-type')).toBe('image/png');
  return Buffer.from(await response.arrayBuffer());
}

describe('playground JSON API (real queue, worker and demo model)', () => {
  let t: TestApp;

  beforeAll(async () => {
    t = await startTestApp();
  });
  afterAll(async () => {
    await t?.stop();
  });

  it('imagine (text form) → 202 with seeds and position, then a done job with grid and images', async () => {
    const user = await newUser(t.url);
    const res = await call<{ id: string; seeds: number[]; position: number }>(`${t.url}/api/imagine`, {
      method: 'POST',
      headers: user,
      json: { text: '/imagine a lighthouse at dusk --seed 5 --ar 3:2' },
    });
    expect(res.status).toBe(202);
    expect(res.body.seeds).toEqual([5, 6, 7, 8]);
    expect(typeof res.body.position).toBe('number');
    expect(res.body.id).toMatch(/^web-/);
    expect(res.headers.get('location')).toBe(`/api/jobs/${res.body.id}`);

    const job = await waitForJob(t.url, res.body.id, ['done'], { headers: user });
    expect(job).toMatchObject({
      id: res.body.id,
      kind: 'imagine',
      status: 'done',
      position: null,
      prompts: Array(4).fill('a lighthouse at dusk'),
      seeds: [5, 6, 7, 8],
      attempts: 1,
      error: null,
      parent: null,
    });
    expect(job.progress).toEqual({ step: job.settings.steps, total: job.settings.steps });
    expect(job.worker).toMatch(/^.+:\d+$/);
    // 3:2 at about the default area, in multiples of 8.
    expect(job.settings.width % 8).toBe(0);
    expect(job.settings.width / job.settings.height).toBeCloseTo(1.5, 1);
    expect(job.grid).toBe(`/api/jobs/${job.id}/grid.png`);
    expect(job.images).toEqual([1, 2, 3, 4].map((n) => `/api/jobs/${job.id}/images/${n}.png`));

    const grid = await png(`${t.url}${job.grid}`, user);
    expect(pngTextChunks(grid).get('parameters')).toContain('a lighthouse at dusk');
    for (const [i, url] of job.images.entries()) {
      const parameters = pngTextChunks(await png(`${t.url}${url}`, user)).get('parameters') ?? '';
      expect(parameters).toContain(`Seed: ${5 + i}`);
      expect(parameters).toContain(`Size: ${job.settings.width}x${job.settings.height}`);
    }
  });

  it('imagine (typed fields) uses the same rules', async () => {
    const user = await newUser(t.url);
    const res = await call<{ id: string; seeds: number[] }>(`${t.url}/api/imagine`, {
      method: 'POST',
      headers: user,
      json: {
        prompt: 'a red fox',
        negative: 'blurry',
        seed: 100,
        steps: 3,
        guidance: 5,
        sampler: 'ddim',
        width: 256,
        height: 320,
      },
    });
    expect(res.status).toBe(202);
    expect(res.body.seeds).toEqual([100, 101, 102, 103]);
    const job = await waitForJob(t.url, res.body.id, ['done'], { headers: user });
    expect(job.settings).toEqual({
      negative: 'blurry',
      sampler: 'ddim',
      steps: 3,
      guidance: 5,
      width: 256,
      height: 320,
      model: 'default',
    });
  });

  it('refine n, reroll and full-size images work on a finished grid', async () => {
    const user = await newUser(t.url);
    const made = await call<{ id: string }>(`${t.url}/api/imagine`, {
      method: 'POST',
      headers: user,
      json: { text: 'a castle --seed 40 --steps 3' },
    });
    const base = await waitForJob(t.url, made.body.id, ['done'], { headers: user });

    const refined = await call<{ id: string; seeds: number[]; position: number }>(
      `${t.url}/api/jobs/${base.id}/refine/2`,
      { method: 'POST', headers: user },
    );
    expect(refined.status).toBe(202);
    expect(refined.body.seeds).toEqual([41, 41, 41, 41]);
    const refine = await waitForJob(t.url, refined.body.id, ['done'], { headers: user });
    expect(refine.kind).toBe('refine');
    expect(refine.parent).toEqual({ id: base.id, n: 2 });
    expect(refine.prompts).toEqual(DEFAULT_SUFFIXES.map((s) => `a castle${s}`));

    const rerolled = await call<{ id: string; seeds: number[] }>(`${t.url}/api/jobs/${base.id}/reroll`, {
      method: 'POST',
      headers: user,
    });
    expect(rerolled.status).toBe(202);
    expect(rerolled.body.seeds).not.toEqual(base.seeds);
    const reroll = await waitForJob(t.url, rerolled.body.id, ['done'], { headers: user });
    expect(reroll.prompts).toEqual(base.prompts);
    expect(reroll.parent).toEqual({ id: base.id, n: null });

    const full = await call<{ id: string; n: number; seed: number; image: string }>(
      `${t.url}/api/jobs/${base.id}/upscale/3`,
      { method: 'POST', headers: user },
    );
    expect(full.status).toBe(200);
    expect(full.body).toMatchObject({
      id: base.id,
      n: 3,
      seed: 42,
      image: `/api/jobs/${base.id}/images/3.png`,
    });
    const image = await png(`${t.url}${full.body.image}`, user);
    expect(pngTextChunks(image).get('parameters')).toContain('Seed: 42');
  });

  it('cancels a queued job and a running one', async () => {
    const first = await newUser(t.url);
    const second = await newUser(t.url);
    const long = await call<{ id: string }>(`${t.url}/api/imagine`, {
      method: 'POST',
      headers: first,
      json: { text: 'a long job --steps 50' },
    });
    const queued = await call<{ id: string; position: number }>(`${t.url}/api/imagine`, {
      method: 'POST',
      headers: second,
      json: { text: 'waits behind it --steps 3' },
    });
    expect(queued.status).toBe(202);
    const before = await call<Job>(`${t.url}/api/jobs/${queued.body.id}`, { headers: second });
    expect(before.body.status).toBe('queued');
    expect(before.body.position).toBeGreaterThanOrEqual(0);

    const cancelQueued = await call<{ id: string; status: string }>(
      `${t.url}/api/jobs/${queued.body.id}/cancel`,
      {
        method: 'POST',
        headers: second,
      },
    );
    expect(cancelQueued.status).toBe(200);
    expect((await waitForJob(t.url, queued.body.id, ['cancelled'])).status).toBe('cancelled');

    await waitForJob(t.url, long.body.id, ['running']);
    // Someone else may not cancel it.
    const foreign = await call<{ error: { code: string } }>(`${t.url}/api/jobs/${long.body.id}/cancel`, {
      method: 'POST',
      headers: second,
    });
    expect(foreign.status).toBe(403);
    expect(foreign.body.error.code).toBe('E_FORBIDDEN');
    const cancelRunning = await call(`${t.url}/api/jobs/${long.body.id}/cancel`, {
      method: 'POST',
      headers: first,
    });
    expect(cancelRunning.status).toBe(200);
    const cancelled = await waitForJob(t.url, long.body.id, ['cancelled']);
    expect(cancelled.grid).toBeNull();
  });

  it('keeps idle connections open long enough that clients close them first (no reuse-after-close resets)', async () => {
    const response = await fetch(`${t.url}/healthz`);
    await response.arrayBuffer();
    const advertised = /timeout=(\d+)/u.exec(response.headers.get('keep-alive') ?? '')?.[1];
    expect(Number(advertised)).toBeGreaterThanOrEqual(60);
  });

  it('answers 429 with Retry-After past the per-user cap', async () => {
    const user = await newUser(t.url);
    const submit = () =>
      call<{ error?: { code: string; message: string } }>(`${t.url}/api/imagine`, {
        method: 'POST',
        headers: user,
        json: { text: 'one more --steps 30' },
      });
    const ids: string[] = [];
    for (let i = 0; i < 2; i++) {
      const ok = await submit();
      expect(ok.status).toBe(202);
      ids.push((ok.body as unknown as { id: string }).id);
    }
    const refused = await submit();
    expect(refused.status).toBe(429);
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(refused.body.error?.code).toBe('E_RATE_LIMITED');
    for (const id of ids) await call(`${t.url}/api/jobs/${id}/cancel`, { method: 'POST', headers: user });
  });

  it('a repeated Idempotency-Key makes one job', async () => {
    const user = { ...(await newUser(t.url)), 'idempotency-key': `key-${randomBytes(6).toString('hex')}` };
    const a = await call<{ id: string }>(`${t.url}/api/imagine`, {
      method: 'POST',
      headers: user,
      json: { text: 'once --steps 2' },
    });
    const b = await call<{ id: string }>(`${t.url}/api/imagine`, {
      method: 'POST',
      headers: user,
      json: { text: 'once --steps 2' },
    });
    expect(a.status).toBe(202);
    expect(b.status).toBe(200);
    expect(b.body.id).toBe(a.body.id);
    // Keys are per user: someone else's request with the same key is their own job.
    const other = await call<{ id: string }>(`${t.url}/api/imagine`, {
      method: 'POST',
      headers: { ...(await newUser(t.url)), 'idempotency-key': user['idempotency-key'] },
      json: { text: 'once --steps 2' },
    });
    expect(other.status).toBe(202);
    expect(other.body.id).not.toBe(a.body.id);
    await waitForJob(t.url, a.body.id, ['done']);
    await waitForJob(t.url, other.body.id, ['done']);
  });

  it('streams progress and the result over server-sent events', async () => {
    const user = await newUser(t.url);
    const controller = new AbortController();
    const stream = await fetch(`${t.url}/api/events`, { headers: user, signal: controller.signal });
    expect(stream.status).toBe(200);
    expect(stream.headers.get('content-type')).toContain('text/event-stream');
    const made = await call<{ id: string }>(`${t.url}/api/imagine`, {
      method: 'POST',
      headers: user,
      json: { text: 'streamed --steps 24' },
    });
    const reader = stream.body!.getReader();
    const decoder = new TextDecoder();
    let text = '';
    const deadline = Date.now() + 40_000;
    while (!text.includes('"status":"done"') && Date.now() < deadline) {
      const { value, done } = await reader.read();
      if (done) break;
      text += decoder.decode(value, { stream: true });
    }
    controller.abort();
    const events = text
      .split('\n\n')
      .filter((block) => block.includes('data: '))
      .map((block) => ({
        type: /^event: (\w+)/mu.exec(block)?.[1],
        data: JSON.parse(block.slice(block.indexOf('data: ') + 6)) as Record<string, unknown>,
      }));
    expect(
      events.some((e) => e.type === 'job' && e.data.id === made.body.id && e.data.status === 'queued'),
    ).toBe(true);
    const progress = events.filter((e) => e.type === 'progress' && e.data.id === made.body.id);
    expect(progress.length).toBeGreaterThan(0);
    // The sampler may evaluate the UNet once more than the step count (PNDM's warm-up); never less.
    expect(progress[0]!.data.total).toBeGreaterThanOrEqual(24);
    const withPreview = progress.find((e) => typeof e.data.preview === 'string');
    if (withPreview !== undefined) {
      // Previews are served while the job runs or shortly after; the URL is well-formed either way.
      expect(withPreview.data.preview).toMatch(
        new RegExp(`^/api/jobs/${made.body.id}/preview\\.png\\?step=\\d+$`),
      );
    }
    expect(
      events.some((e) => e.type === 'job' && e.data.id === made.body.id && e.data.status === 'done'),
    ).toBe(true);
  });

  it('health, readiness and metrics', async () => {
    const health = await call(`${t.url}/healthz`);
    expect(health.status).toBe(200);
    expect(health.body).toMatchObject({ status: 'ok' });
    const ready = await call(`${t.url}/readyz`);
    expect(ready.status).toBe(200);
    expect(ready.body).toEqual({ status: 'ready', checks: { redis: 'ok', model: 'ok' } });

    const metrics = await fetch(`${t.url}/metrics`);
    expect(metrics.headers.get('content-type')).toContain('text/plain');
    const text = await metrics.text();
    for (const name of [
      'imagine_queue_depth',
      'imagine_queue_jobs{status="waiting"}',
      'imagine_queue_jobs{status="active"}',
      'imagine_jobs_finished_total{state="done"}',
      'imagine_denoise_step_seconds_count',
      'imagine_deliveries_total{outcome="delivered"}',
      'imagine_job_retries_total',
      'imagine_submissions_total{outcome="accepted"}',
    ]) {
      expect(text).toContain(name);
    }
    for (const phase of ['queue_wait', 'text_encode', 'denoise', 'decode', 'compose', 'deliver']) {
      const count = new RegExp(`^imagine_job_phase_seconds_count\\{phase="${phase}"\\} (\\d+)`, 'mu').exec(
        text,
      );
      expect(Number(count?.[1]), phase).toBeGreaterThan(0);
    }
    const done = /^imagine_jobs_finished_total\{state="done"\} (\d+)/mu.exec(text);
    expect(Number(done?.[1])).toBeGreaterThan(0);
    const steps = /^imagine_denoise_step_seconds_count (\d+)/mu.exec(text);
    expect(Number(steps?.[1])).toBeGreaterThan(0);
  });
});
