import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, type Job, newUser, startTestApp, type TestApp, waitForJob } from './app-helper.ts';

/**
 * Team settings through the playground API, black-box: the real app (private Redis, queue, worker,
 * demo model) over real HTTP. The playground is one team, so every test here shares its settings;
 * each test sets what it relies on.
 */
describe('playground team settings (GET/PUT /api/settings)', () => {
  let t: TestApp;

  beforeAll(async () => {
    t = await startTestApp({ BANNED_WORDS: 'forbiddenword' });
  });
  afterAll(async () => {
    await t?.stop();
  });

  const put = (json: unknown, headers: Record<string, string> = {}) =>
    call<{ settings: Record<string, unknown>; error: { code: string; message: string } }>(
      `${t.url}/api/settings`,
      { method: 'PUT', headers, json },
    );

  const imagine = (text: string, headers: Record<string, string>) =>
    call<{ id: string; error: { code: string; message: string; retryAfterSeconds?: number } }>(
      `${t.url}/api/imagine`,
      { method: 'POST', headers, json: { text } },
    );

  it('PUT {"suffixes"} changes what refine produces: prompt + each suffix, one image per suffix', async () => {
    const user = await newUser(t.url);
    expect(
      (await put({ suffixes: [', oil painting', ', pencil sketch'], dailyQuota: null }, user)).status,
    ).toBe(200);
    const made = await imagine('a castle --seed 40', user);
    expect(made.status).toBe(202);
    await waitForJob(t.url, made.body.id, ['done'], { headers: user });
    const refined = await call<{ id: string; seeds: number[] }>(
      `${t.url}/api/jobs/${made.body.id}/refine/2`,
      {
        method: 'POST',
        headers: user,
      },
    );
    expect(refined.status).toBe(202);
    expect(refined.body.seeds).toEqual([41, 41]);
    const job = await waitForJob(t.url, refined.body.id, ['done'], { headers: user });
    expect(job.prompts).toEqual(['a castle, oil painting', 'a castle, pencil sketch']);
    expect(job.images).toHaveLength(2);
  });

  it('PUT {"bannedWords"} makes a prompt with that word a 400 E_BANNED_WORD that does not echo it', async () => {
    const user = await newUser(t.url);
    expect((await put({ bannedWords: ['lighthouse'] }, user)).status).toBe(200);
    for (const text of ['A LightHouse at dusk', 'a light-house at dusk --seed 3', 'a líghthouse']) {
      const res = await imagine(text, user);
      expect(res.status, text).toBe(400);
      expect(res.body.error.code).toBe('E_BANNED_WORD');
      expect(res.body.error.message.toLowerCase()).not.toContain('lighthouse');
      expect(res.body.error.message).toContain('not allowed here');
    }
    // Other words still pass.
    const ok = await imagine('a harbour at dusk --steps 1', user);
    expect(ok.status).toBe(202);
    await waitForJob(t.url, ok.body.id, ['done'], { headers: user });
  });

  it('the environment list (BANNED_WORDS) applies and a team cannot lift it', async () => {
    const user = await newUser(t.url);
    expect((await put({ bannedWords: [] }, user)).status).toBe(200);
    const res = await imagine('a ForbiddenWord sign', user);
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe('E_BANNED_WORD');
  });

  it('PUT {"dailyQuota": 1} makes a user\'s second grid that day a 429 E_QUOTA with when it resets', async () => {
    const user = await newUser(t.url);
    const other = await newUser(t.url);
    expect((await put({ dailyQuota: 1, bannedWords: null }, user)).status).toBe(200);
    const first = await imagine('a boat --steps 1', user);
    expect(first.status).toBe(202);
    const second = await imagine('a boat --steps 1', user);
    expect(second.status).toBe(429);
    expect(second.body.error.code).toBe('E_QUOTA');
    expect(second.body.error.message).toMatch(/resets at 00:00 UTC \(in \d+ (h \d+ )?min\)/u);
    const now = new Date();
    const untilMidnight = Math.ceil(
      (Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate() + 1) - now.getTime()) / 1000,
    );
    const retryAfter = Number(second.headers.get('retry-after'));
    expect(retryAfter).toBeGreaterThan(0);
    expect(Math.abs(retryAfter - untilMidnight)).toBeLessThanOrEqual(5);
    // The quota is per user: someone else still gets a grid.
    const theirs = await imagine('a boat --steps 1', other);
    expect(theirs.status).toBe(202);
    // Refine and reroll make images too, so they count as well.
    await waitForJob(t.url, first.body.id, ['done'], { headers: user });
    const reroll = await call<{ error: { code: string } }>(`${t.url}/api/jobs/${first.body.id}/reroll`, {
      method: 'POST',
      headers: user,
    });
    expect(reroll.status).toBe(429);
    expect(reroll.body.error.code).toBe('E_QUOTA');
    await waitForJob(t.url, theirs.body.id, ['done'], { headers: other });
    expect((await put({ dailyQuota: null }, user)).status).toBe(200);
  });

  it('GET returns what was set, and the defaults apply where the user gave none', async () => {
    const user = await newUser(t.url);
    const set = {
      suffixes: [', a'],
      negative: 'blurry',
      sampler: 'euler_a',
      steps: 3,
      guidance: 5,
      aspect: '3:2',
      model: 'demo',
      ownerOnlyButtons: true,
      bannedWords: ['dragon'],
      dailyQuota: 0,
      admins: ['web:u-0123456789abcdef'],
    };
    expect((await put(set, user)).status).toBe(200);
    const got = await call<{ settings: typeof set; effective: Record<string, unknown> }>(
      `${t.url}/api/settings`,
      {
        headers: user,
      },
    );
    expect(got.status).toBe(200);
    expect(got.body.settings).toEqual(set);
    expect(got.body.effective).toMatchObject({ steps: 3, bannedWords: ['forbiddenword', 'dragon'] });

    const made = await imagine('a cat', user);
    expect(made.status).toBe(202);
    const job: Job = await waitForJob(t.url, made.body.id, ['done'], { headers: user });
    expect(job.settings).toEqual({
      negative: 'blurry',
      sampler: 'euler_a',
      steps: 3,
      guidance: 5,
      width: 576,
      height: 384,
      // The team's model (`demo`) is not one this deployment serves: the default model ran.
      model: 'default',
    });

    // A partial update changes only what it names; null drops a setting (inherit again).
    expect((await put({ steps: null, aspect: null }, user)).status).toBe(200);
    const after = await call<{ settings: Record<string, unknown> }>(`${t.url}/api/settings`, {
      headers: user,
    });
    expect(after.body.settings).toEqual({ ...set, steps: undefined, aspect: undefined });
    expect(Object.keys(after.body.settings)).not.toContain('steps');
  });

  it.each([
    [{ suffixes: [] }, 'suffixes'],
    [{ suffixes: ['x'.repeat(101)] }, 'suffixes.0'],
    [{ steps: 500 }, 'steps'],
    [{ sampler: 'magic' }, 'sampler'],
    [{ dailyQuota: 'lots' }, 'dailyQuota'],
    [{ aspect: '10:1' }, 'aspect'],
    [{ nsfw: 'allow-everything' }, 'nsfw'],
  ])('PUT %j is a 400 naming the bad field, and changes nothing', async (json, field) => {
    const user = await newUser(t.url);
    const before = await call(`${t.url}/api/settings`, { headers: user });
    const res = await put(json, user);
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe('E_INVALID_REQUEST');
    expect(res.body.error.message).toContain(`"${field}"`);
    expect((await call(`${t.url}/api/settings`, { headers: user })).body).toEqual(before.body);
  });

  it('refuses a suffix with a banned word (without echoing it)', async () => {
    const user = await newUser(t.url);
    const res = await put({ suffixes: [', forbiddenword'] }, user);
    expect(res.status).toBe(400);
    expect(res.body.error.message).toContain('"suffixes.0"');
    expect(res.body.error.message).not.toContain('forbiddenword');
  });

  it('logs every change with who and what', async () => {
    const user = await newUser(t.url);
    await put({ guidance: 6.5 }, user);
    const line = t
      .logs()
      .split('\n')
      .filter((l) => l.includes('team settings changed'))
      .map((l) => JSON.parse(l) as { by: string; patch: Record<string, unknown>; scope: object })
      .find((l) => l.patch.guidance === 6.5);
    expect(line).toMatchObject({
      by: expect.stringMatching(/^web:u-[0-9a-f]{16}$/u),
      patch: { guidance: 6.5 },
    });
    expect(line?.scope).toEqual({ surface: 'web', workspace: 'playground' });
  });
});

describe('playground team settings behind PLAYGROUND_TOKEN', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({ PLAYGROUND_TOKEN: 'test-token-123' });
  });
  afterAll(async () => {
    await t?.stop();
  });

  it('only the token holder may read or change them', async () => {
    const anonymous = await call(`${t.url}/api/settings`, { method: 'PUT', json: { steps: 2 } });
    expect(anonymous.status).toBe(401);
    const res = await call<{ settings: Record<string, unknown> }>(`${t.url}/api/settings`, {
      method: 'PUT',
      headers: { authorization: 'Bearer test-token-123' },
      json: { steps: 2 },
    });
    expect(res.status).toBe(200);
    expect(res.body.settings).toEqual({ steps: 2 });
    expect((await call(`${t.url}/api/settings`)).status).toBe(401);
  });
});
