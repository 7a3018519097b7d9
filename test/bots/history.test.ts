import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { GridHistory } from '../../bots/history/store.ts';
import { PLAIN_MARKUP } from '../../bots/service/format.ts';
import { ConversationService, type ServiceSettings } from '../../bots/service.ts';
import type { ImagineCommand } from '../../bots/surface.ts';
import { DEFAULT_SUFFIXES } from '../../core/config.ts';
import { uniquePrefix, useTestRedis } from '../helpers/use-redis.ts';
import { FakeJobs } from './fake-jobs.ts';
import { RecordingReply, RecordingSurface } from './recording-surface.ts';
import { SERVICE_SETTINGS } from './service-settings.ts';

const SETTINGS: ServiceSettings = SERVICE_SETTINGS;

const PNG = Buffer.from('png');

/** `/imagine history` in the service: the real Redis index (GridHistory), FakeJobs for the queue. */
describe('ConversationService history (real Redis index)', () => {
  const redis = useTestRedis();
  let jobs: FakeJobs;
  let history: GridHistory;
  let service: ConversationService;
  let now = Date.UTC(2026, 11, 3, 12);

  beforeEach(() => {
    history = new GridHistory({
      connection: redis.url,
      prefix: uniquePrefix('hist'),
      ttlMs: 31 * 86_400_000,
    });
    jobs = new FakeJobs({ limits: { perUser: 100, queueDepth: 1000 } });
    now = Date.UTC(2026, 11, 3, 12);
    service = new ConversationService({ jobs, settings: SETTINGS, history, now: () => now });
    service.attach(new RecordingSurface({}, 'slack'));
  });
  afterEach(async () => {
    await service.close();
    await history.close();
  });

  let n = 0;
  const imagine = async (over: Partial<ImagineCommand> = {}): Promise<string> => {
    now += 60_000;
    const result = await service.imagine(
      {
        surface: 'slack',
        user: 'U1',
        workspace: 'T1',
        channel: 'C1',
        interactionId: `i-${++n}`,
        text: `prompt ${n}`,
        ...over,
      } as ImagineCommand,
      new RecordingReply(),
    );
    return result.jobId!;
  };
  const read = (over: { user?: string; channel?: string; workspace?: string; limit?: number } = {}) =>
    service.history({ surface: 'slack', user: 'U1', workspace: 'T1', channel: 'C1', ...over }, PLAIN_MARKUP);

  it("lists only the requester's grids in that channel, newest first, with status, when and buttons", async () => {
    const a = await imagine({ text: 'a red fox' });
    const b = await imagine({ text: 'history of rome' });
    await imagine({ user: 'U2', text: 'not mine' });
    await imagine({ channel: 'C2', text: 'another channel' });
    await imagine({ workspace: 'T2', text: 'another workspace' });
    await jobs.complete(a, { grid: PNG, images: [PNG, PNG, PNG, PNG] });
    now += 5 * 60_000;

    const view = await read();
    expect(view.entries.map((e) => e.record.id)).toEqual([b, a]);
    expect(view.entries.map((e) => e.prompt)).toEqual(['history of rome', 'a red fox']);
    expect(view.entries.map((e) => e.status)).toEqual(['queued', 'done']);
    expect(view.text).toContain('Your last 2 grids in this channel');
    expect(view.entries[1]?.text).toBe('2. a red fox · ✅ done · 9 min ago');
    // A finished grid carries its usual buttons; a queued one, cancel.
    expect(view.entries[1]?.controls.map((row) => row.map((c) => c.label))).toEqual([
      ['1', '2', '3', '4', '🔄'],
      ['U1', 'U2', 'U3', 'U4'],
      ['V1', 'V2', 'V3', 'V4'],
    ]);
    expect(view.entries[0]?.controls.map((row) => row.map((c) => c.label))).toEqual([['Cancel']]);

    expect((await read({ user: 'U2' })).entries.map((e) => e.prompt)).toEqual(['not mine']);
    expect((await read({ channel: 'C2' })).entries.map((e) => e.prompt)).toEqual(['another channel']);
    expect((await read({ user: 'U3' })).entries).toEqual([]);
    expect((await read({ user: 'U3' })).text).toContain('no grids in this channel');
  });

  it('skips and drops grids whose record expired, and shows at most the limit', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 7; i++) ids.push(await imagine());
    jobs.expire(ids[6]!);
    jobs.expire(ids[3]!);
    const view = await read({ limit: 3 });
    expect(view.entries.map((e) => e.record.id)).toEqual([ids[5], ids[4], ids[2]]);
    const key = history.keyOf({ surface: 'slack', workspace: 'T1', channel: 'C1', user: 'U1' });
    expect(await redis.admin.zrevrange(key, 0, -1)).toEqual([ids[5], ids[4], ids[2], ids[1], ids[0]]);
    // The index lives as long as the records (plus a day), renewed by every new grid.
    const ttl = await redis.admin.pttl(key);
    expect(ttl).toBeGreaterThan(30 * 86_400_000);
    expect(ttl).toBeLessThanOrEqual(31 * 86_400_000);
  });

  it('keeps the newest 25 per user and channel', async () => {
    for (let i = 0; i < 27; i++) await imagine();
    const key = history.keyOf({ surface: 'slack', workspace: 'T1', channel: 'C1', user: 'U1' });
    expect(await redis.admin.zcard(key)).toBe(25);
    expect((await read({ limit: 10 })).entries[0]?.record.id).toBe(jobs.submitted.at(-1));
  });

  it("a history entry's refine button runs: a refine job of that grid with the suffixes", async () => {
    const id = await imagine({ text: 'a lighthouse --seed 7' });
    await jobs.complete(id, { grid: PNG, images: [PNG, PNG, PNG, PNG] });
    const entry = (await read()).entries[0]!;
    const refine2 = entry.controls[0]![1]!;
    const reply = new RecordingReply();
    const made = await service.press(
      {
        surface: 'slack',
        user: 'U1',
        workspace: 'T1',
        channel: 'C1',
        interactionId: 'press-1',
        controlId: refine2.id,
      },
      reply,
    );
    expect(reply.only('queued')).toHaveLength(1);
    const refined = jobs.records.get(made.jobId!)!;
    expect(refined.spec.kind).toBe('refine');
    expect(refined.spec.parent).toEqual({ gridId: id, index: 1 });
    expect(refined.spec.prompts).toEqual(DEFAULT_SUFFIXES.map((s) => `a lighthouse${s}`));
    // The refine is itself in the history, newest first, labelled as what it is.
    const after = await read();
    expect(after.entries.map((e) => e.record.id)).toEqual([made.jobId, id]);
    expect(after.entries[0]?.text).toContain('refine of image 2');
  });

  it('a redelivered interaction is listed once', async () => {
    await imagine({ interactionId: 'same' });
    await service.imagine(
      { surface: 'slack', user: 'U1', workspace: 'T1', channel: 'C1', interactionId: 'same', text: 'x' },
      new RecordingReply(),
    );
    expect((await read()).entries).toHaveLength(1);
  });
});
