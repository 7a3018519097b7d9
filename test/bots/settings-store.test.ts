import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import { DailyQuota } from '../../bots/settings/quota.ts';
import { TeamSettingsStore } from '../../bots/settings/store.ts';
import type { EffectiveSettings } from '../../core/team-settings.ts';
import { uniquePrefix, useTestRedis } from '../helpers/use-redis.ts';

const global: EffectiveSettings = {
  suffixes: [', a'],
  negative: '',
  sampler: 'pndm',
  steps: 25,
  guidance: 7.5,
  ownerOnlyButtons: false,
  bannedWords: [],
  dailyQuota: 0,
  admins: [],
};

interface Line {
  obj: object;
  msg: string;
}

function recordingLog(lines: Line[]) {
  const push = (obj: object, msg: string) => lines.push({ obj, msg });
  return { debug: push, info: push, warn: push, error: push };
}

describe('team settings store (two bot processes on one real Redis)', () => {
  const redis = useTestRedis();

  const twoStores = async (lines: Line[] = []) => {
    const prefix = uniquePrefix('settings');
    const make = () =>
      new TeamSettingsStore({ connection: redis.url, prefix, global, log: recordingLog(lines) });
    const a = make();
    const b = make();
    redis.cleanups.push(
      () => a.close(),
      () => b.close(),
    );
    await Promise.all([a.start(), b.start()]);
    return { a, b, prefix };
  };

  const where = { surface: 'slack', workspace: 'T1', channel: 'C1' } as const;
  const workspace = { surface: 'slack', workspace: 'T1' } as const;
  const actor = { surface: 'slack', user: 'U1' } as const;

  it('a change made by one process takes effect in the other at once (its cache is dropped)', async () => {
    const { a, b } = await twoStores();
    // B has the old value cached.
    expect((await b.resolve(where)).effective.steps).toBe(25);
    expect(await b.overrides(workspace)).toEqual({});
    const dropped = once(b, 'invalidated');
    await a.update(workspace, { steps: 12, suffixes: [', x', ', y'] }, actor);
    expect(await dropped).toEqual([a.keyOf(workspace)]);
    expect((await b.resolve(where)).effective).toMatchObject({ steps: 12, suffixes: [', x', ', y'] });
    // The channel overrides its workspace, in both processes.
    const droppedAgain = once(a, 'invalidated');
    await b.update(where, { steps: 7 }, actor);
    await droppedAgain;
    expect((await a.resolve(where)).effective.steps).toBe(7);
    expect((await a.resolve({ ...where, channel: 'C2' })).effective.steps).toBe(12);
  });

  it('serves repeated reads from the cache until a change', async () => {
    const { a, prefix } = await twoStores();
    await a.update(workspace, { guidance: 3 }, actor);
    expect((await a.overrides(workspace)).guidance).toBe(3);
    // Written behind the store's back (no publish): the cached value stands...
    await redis.admin.hset(a.keyOf(workspace), 'guidance', '4');
    expect((await a.overrides(workspace)).guidance).toBe(3);
    // ...until a change is announced.
    const dropped = once(a, 'invalidated');
    await redis.admin.publish(`${prefix}:settings:changed`, a.keyOf(workspace));
    await dropped;
    expect((await a.overrides(workspace)).guidance).toBe(4);
  });

  it('null drops a field, reset drops them all, and unreadable fields are ignored', async () => {
    const { a } = await twoStores();
    await a.update(workspace, { steps: 5, negative: 'blurry' }, actor);
    expect(await a.update(workspace, { steps: null }, actor)).toEqual({ negative: 'blurry' });
    await redis.admin.hset(a.keyOf(workspace), 'sampler', '"magic"');
    const dropped = once(a, 'invalidated');
    await a.update(workspace, {}, actor);
    await dropped;
    expect(await a.overrides(workspace)).toEqual({ negative: 'blurry' });
    await a.reset(workspace, actor);
    expect(await a.overrides(workspace)).toEqual({});
  });

  it('answers E_UNAVAILABLE (a user error to retry, not an internal one) when Redis is unreachable', async () => {
    // A port nothing listens on: connecting is refused at once, over and over.
    const away = new TeamSettingsStore({
      connection: 'redis://127.0.0.1:1',
      prefix: 'p',
      global,
      log: recordingLog([]),
    });
    const quota = new DailyQuota({ connection: 'redis://127.0.0.1:1', prefix: 'p' });
    redis.cleanups.push(
      () => away.close(),
      () => quota.close(),
    );
    await expect(away.overrides(workspace)).rejects.toMatchObject({ code: 'E_UNAVAILABLE' });
    await expect(away.update(workspace, { steps: 3 }, actor)).rejects.toMatchObject({
      code: 'E_UNAVAILABLE',
    });
    await expect(quota.take(workspace, 'u1', 4, 1, Date.now())).rejects.toMatchObject({
      code: 'E_UNAVAILABLE',
    });
  });

  it('logs every change with who and what, and keeps it in Redis', async () => {
    const lines: Line[] = [];
    const { a, prefix } = await twoStores(lines);
    await a.update(where, { bannedWords: ['x'] }, actor);
    expect(lines.find((l) => l.msg === 'team settings changed')?.obj).toEqual({
      scope: where,
      by: 'slack:U1',
      patch: { bannedWords: ['x'] },
    });
    const [stored] = await redis.admin.lrange(`${prefix}:settings:changes`, 0, 0);
    expect(JSON.parse(stored!)).toMatchObject({ scope: where, by: actor, patch: { bannedWords: ['x'] } });
  });
});

describe('daily quota (real Redis)', () => {
  const redis = useTestRedis();
  const scope = { surface: 'web', workspace: 'playground' } as const;

  const quota = () => {
    const q = new DailyQuota({ connection: redis.url, prefix: uniquePrefix('quota') });
    redis.cleanups.push(() => q.close());
    return q;
  };

  it('allows a grid while images are left, counts all of it, and resets the next UTC day', async () => {
    const q = quota();
    const now = Date.UTC(2026, 11, 3, 12);
    const first = await q.take(scope, 'u1', 4, 6, now);
    expect(first).toMatchObject({ allowed: true, used: 4, resetsAt: Date.UTC(2026, 11, 4) });
    expect(await q.take(scope, 'u1', 4, 6, now)).toMatchObject({ allowed: true, used: 8 });
    expect(await q.take(scope, 'u1', 4, 6, now)).toMatchObject({ allowed: false, used: 8 });
    // Another user, another day: counted apart.
    expect(await q.take(scope, 'u2', 4, 6, now)).toMatchObject({ allowed: true, used: 4 });
    expect(await q.take(scope, 'u1', 4, 6, now + 86_400_000)).toMatchObject({ allowed: true, used: 4 });
    // The key goes away after its day.
    const ttl = await redis.admin.expiretime(q.keyOf(scope, 'u1', '20261203'));
    expect(ttl).toBe(Date.UTC(2026, 11, 4) / 1000 + 3600);
  });

  it('never lets concurrent requests both take the last images', async () => {
    const q = quota();
    const now = Date.UTC(2026, 11, 3, 12);
    const results = await Promise.all(Array.from({ length: 20 }, () => q.take(scope, 'u1', 4, 8, now)));
    expect(results.filter((r) => r.allowed)).toHaveLength(2);
  });

  it('gives images back on refund', async () => {
    const q = quota();
    const now = Date.UTC(2026, 11, 3, 12);
    const charge = await q.take(scope, 'u1', 4, 1, now);
    expect(charge.allowed).toBe(true);
    await charge.refund();
    expect(await q.take(scope, 'u1', 4, 1, now)).toMatchObject({ allowed: true, used: 4 });
  });
});
