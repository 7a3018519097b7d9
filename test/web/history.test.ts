import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queueKeys } from '../../queue/keys.ts';
import { call, type Job, newUser, startTestApp, type TestApp, waitForJob } from './app-helper.ts';

/**
 * `GET /api/history`, black-box: the real app (private Redis, queue, worker, demo model) over HTTP.
 * Each browser identity sees only its own grids, newest first; expired ones drop out.
 */
describe('playground history (GET /api/history)', () => {
  let t: TestApp;
  let admin: Redis;

  beforeAll(async () => {
    t = await startTestApp({ PER_USER_LIMIT: '10' });
    admin = new Redis(t.app.redis as string);
  });
  afterAll(async () => {
    admin?.disconnect();
    await t?.stop();
  });

  const imagine = async (text: string, user: { cookie: string }) => {
    const made = await call<{ id: string }>(`${t.url}/api/imagine`, {
      method: 'POST',
      headers: user,
      json: { text },
    });
    expect(made.status).toBe(202);
    return made.body.id;
  };
  const history = (user: { cookie: string }, query = '') =>
    call<{ grids: (Job & { prompt: string; requestedAt: number })[]; error: { code: string } }>(
      `${t.url}/api/history${query}`,
      { headers: user },
    );

  it("lists the caller's grids only, newest first, skipping expired ones; a listed grid's buttons work", async () => {
    const alice = await newUser(t.url);
    const bob = await newUser(t.url);
    const a1 = await imagine('a red fox --seed 1', alice);
    const b1 = await imagine('history of rome', bob);
    const a2 = await imagine('a blue whale --seed 2', alice);
    const a3 = await imagine('a green frog --seed 3', alice);

    const listed = await history(alice);
    expect(listed.status).toBe(200);
    expect(listed.body.grids.map((g) => g.id)).toEqual([a3, a2, a1]);
    expect(listed.body.grids.map((g) => g.prompt)).toEqual(['a green frog', 'a blue whale', 'a red fox']);
    expect(listed.body.grids[0]?.requestedAt).toBeGreaterThanOrEqual(listed.body.grids[1]!.requestedAt);
    expect((await history(bob)).body.grids.map((g) => g.id)).toEqual([b1]);
    // "history of rome" was a prompt like any other.
    expect((await history(bob)).body.grids[0]?.prompt).toBe('history of rome');
    expect((await history(await newUser(t.url))).body.grids).toEqual([]);

    // An expired record is left out (and the limit applies).
    await admin.del(queueKeys('imagine').record(a2));
    expect((await history(alice)).body.grids.map((g) => g.id)).toEqual([a3, a1]);
    expect((await history(alice, '?limit=1')).body.grids.map((g) => g.id)).toEqual([a3]);
    expect((await history(alice, '?limit=0')).status).toBe(400);
    // Only digits: the message says "a whole number", so hex, exponents and decimals are refused too.
    for (const bad of ['0x1', '1e0', '1.0', '%201', '']) {
      expect((await history(alice, `?limit=${bad}`)).status, bad).toBe(400);
    }

    // Refine from a listed grid: it runs.
    await waitForJob(t.url, a1, ['done'], { headers: alice });
    const refined = await call<{ id: string }>(`${t.url}/api/jobs/${a1}/refine/1`, {
      method: 'POST',
      headers: alice,
    });
    expect(refined.status).toBe(202);
    const job = await waitForJob(t.url, refined.body.id, ['done'], { headers: alice });
    expect(job.kind).toBe('refine');
    expect((await history(alice)).body.grids[0]?.id).toBe(refined.body.id);
  });
});
