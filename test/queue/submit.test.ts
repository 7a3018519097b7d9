import { Queue } from 'bullmq';
import { describe, expect, it } from 'vitest';
import { ErrorCode, UserError } from '../../core/errors.ts';
import { createJobs, type JobsOptions } from '../../queue/jobs.ts';
import { queueKeys } from '../../queue/keys.ts';
import { createNoopEngine } from '../../queue/noop-engine.ts';
import { GRID_EXPIRED_MESSAGE, requireRecord } from '../../queue/records.ts';
import type { Jobs } from '../../queue/types.ts';
import { startWorker } from '../../queue/worker.ts';
import { uniquePrefix, useTestRedis } from '../helpers/use-redis.ts';
import { captureLogger, makeSpec, recordDeliveries, waitFor } from './helpers.ts';

const redis = useTestRedis();
const { cleanups } = redis;

function open(
  prefix: string,
  options: Partial<Omit<JobsOptions, 'connection' | 'prefix' | 'logger'>> = {},
): Jobs {
  const jobs = createJobs({ connection: redis.url, prefix, logger: captureLogger(), ...options });
  cleanups.push(() => jobs.close());
  return jobs;
}

function generateQueue(prefix: string): Queue {
  const queue = new Queue('generate', { connection: { url: redis.url }, prefix });
  cleanups.push(() => queue.close());
  return queue;
}

async function runWorker(prefix: string) {
  const worker = await startWorker({
    connection: redis.url,
    prefix,
    engine: createNoopEngine(),
    logger: captureLogger(),
    previewEveryMs: 0,
  });
  cleanups.push(() => worker.close({ releaseNow: true }));
  return worker;
}

describe('submit', () => {
  it('returns the job id from the interaction, the seeds and the queue position', async () => {
    const jobs = open(uniquePrefix('s'));
    const first = await jobs.submit(makeSpec({ interactionId: '1234', seeds: [7, 8, 9, 10] }));
    expect(first).toEqual({ jobId: 'discord-1234', seeds: [7, 8, 9, 10], position: 0, duplicate: false });
    const second = await jobs.submit(makeSpec({ user: 'user-2' }));
    const third = await jobs.submit(makeSpec({ user: 'user-3', surface: 'slack' }));
    // Slack's channel is another team: its first job takes its turn before discord's second.
    expect([second.position, third.position]).toEqual([1, 1]);
    expect(await jobs.status(third.jobId)).toEqual({ state: 'queued', position: 1 });
    expect(await jobs.status(second.jobId)).toEqual({ state: 'queued', position: 2 });
  });

  it('rejects bad input with a user error that says what is wrong', async () => {
    const prefix = uniquePrefix('s');
    const jobs = open(prefix);
    const cases: [unknown, RegExp][] = [
      [{ ...makeSpec(), seeds: [1, 2] }, /seeds: needs one seed per prompt \(4 prompts, 2 seeds\)/u],
      [{ ...makeSpec(), width: 100 }, /width/u],
      [{ ...makeSpec(), steps: 0 }, /steps/u],
      [{ ...makeSpec(), v: 2 }, /^That request can't be run: v:/u],
      [{ ...makeSpec(), kind: 'refine' }, /parent/u],
      [{ ...makeSpec(), origin: { surface: 'irc', user: 'u', channel: 'c', interactionId: 'i' } }, /origin/u],
      [null, /spec/u],
    ];
    for (const [input, message] of cases) {
      // biome-ignore lint/suspicious/noExplicitAny: deliberately invalid input
      const error = await jobs.submit(input as any).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(UserError);
      expect(error).toMatchObject({ code: ErrorCode.InvalidRequest });
      expect((error as Error).message).toMatch(message);
    }
    expect(await generateQueue(prefix).count()).toBe(0);
    expect(await redis.admin.zcard(queueKeys(prefix).unfinished)).toBe(0);
  });

  it('is idempotent on the interaction id: a redelivery queues nothing new', async () => {
    const prefix = uniquePrefix('s');
    const jobs = open(prefix);
    const spec = makeSpec({ interactionId: 'redelivered', seeds: [1, 2, 3, 4] });
    const first = await jobs.submit(spec);
    // Redelivered with different seeds (a retried interaction re-rolls): the stored seeds win.
    const again = await jobs.submit({ ...spec, seeds: [5, 6, 7, 8] });
    expect(again).toEqual({ jobId: first.jobId, seeds: [1, 2, 3, 4], position: 0, duplicate: true });
    // Many concurrent redeliveries: exactly one is new.
    const burst = await Promise.all(
      Array.from({ length: 20 }, () => jobs.submit(makeSpec({ interactionId: 'storm', user: 'user-9' }))),
    );
    expect(burst.filter((r) => !r.duplicate)).toHaveLength(1);
    expect(new Set(burst.map((r) => r.jobId)).size).toBe(1);
    expect(await generateQueue(prefix).count()).toBe(2);
  });

  it('caps queued plus running jobs per user', async () => {
    const jobs = open(uniquePrefix('s'));
    await jobs.submit(makeSpec({ user: 'alice' }));
    const second = await jobs.submit(makeSpec({ user: 'alice' }));
    const refused = await jobs.submit(makeSpec({ user: 'alice' })).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(UserError);
    expect(refused).toMatchObject({
      code: ErrorCode.RateLimited,
      message:
        'You already have 2 image jobs queued or running (the limit is 2). Wait for one to finish or cancel one, then try again.',
    });
    expect((refused as UserError).retryAfterSeconds).toBeGreaterThan(0);
    // Others are not affected; the same user id on another surface is another user.
    await jobs.submit(makeSpec({ user: 'bob' }));
    await jobs.submit(makeSpec({ user: 'alice', surface: 'slack' }));
    await jobs.cancel(second.jobId, { surface: 'discord', user: 'alice' });
    await jobs.submit(makeSpec({ user: 'alice' }));
  });

  it('caps the global queue depth, saying when to try again', async () => {
    const prefix = uniquePrefix('s');
    const jobs = open(prefix, { limits: { perUser: 100, queueDepth: 5 } });
    for (let i = 0; i < 5; i++) await jobs.submit(makeSpec({ user: `u${i % 2}` }));
    await redis.admin.hset(queueKeys(prefix).stats, 'avgJobMs', '12300');
    const refused = await jobs.submit(makeSpec({ user: 'late' })).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(UserError);
    expect(refused).toMatchObject({
      code: ErrorCode.QueueFull,
      retryAfterSeconds: 13,
      message: 'The queue is full (5 jobs waiting or running). Please try again in about 13 seconds.',
    });
  });

  it('a burst of 1000 submits from 100 users never exceeds the caps and loses no accepted job', async () => {
    const prefix = uniquePrefix('s');
    const jobs = open(prefix, { limits: { perUser: 2, queueDepth: 150 } });
    const results = await Promise.all(
      Array.from({ length: 1000 }, (_, i) =>
        jobs.submit(makeSpec({ user: `user-${i % 100}`, interactionId: `burst-${i}` })).then(
          (r) => ({ ok: true as const, r, user: `user-${i % 100}` }),
          (e: unknown) => ({ ok: false as const, code: (e as UserError).code, user: `user-${i % 100}` }),
        ),
      ),
    );
    const accepted = results.filter((x) => x.ok);
    const refused = results.filter((x) => !x.ok);
    expect(accepted).toHaveLength(150);
    const perUser = new Map<string, number>();
    for (const a of accepted) perUser.set(a.user, (perUser.get(a.user) ?? 0) + 1);
    expect(Math.max(...perUser.values())).toBeLessThanOrEqual(2);
    expect(new Set(refused.map((r) => (r.ok ? '' : r.code)))).toEqual(
      new Set([ErrorCode.RateLimited, ErrorCode.QueueFull]),
    );
    // Every accepted job is in BullMQ and has a queued record.
    const queue = generateQueue(prefix);
    expect(await queue.count()).toBe(150);
    const states = await Promise.all(accepted.map((a) => (a.ok ? jobs.status(a.r.jobId) : null)));
    expect(states.every((s) => s?.state === 'queued')).toBe(true);
    expect(new Set(states.map((s) => (s?.state === 'queued' ? s.position : -1))).size).toBe(150);
  });

  it('records survive a restart: a new Jobs instance reads records, images, duplicates and pending deliveries', async () => {
    const prefix = uniquePrefix('s');
    const before = open(prefix);
    await runWorker(prefix);
    const spec = makeSpec({ interactionId: 'survivor' });
    const { jobId } = await before.submit(spec);
    await before.updateMessageRef(jobId, { messageId: 'm-1' });
    // The bot goes down before the job finishes; nobody consumes the delivery meanwhile.
    await before.close();
    await waitFor(
      'done',
      async () => (await redis.admin.hget(queueKeys(prefix).record(jobId), 'state')) === 'done',
    );

    const after = open(prefix);
    const record = await requireRecord(after, jobId);
    expect(record.state.status).toEqual({ state: 'done' });
    expect(record.spec).toMatchObject({ prompts: spec.prompts, seeds: spec.seeds });
    expect(record.state.messageRef).toEqual({ token: 'tok', messageId: 'm-1' });
    // The TTL counts from when the job finished (issue 9 item 13), not from submission.
    expect(record.state.expiresAt - record.state.timings.finishedAt!).toBe(30 * 24 * 3600 * 1000);
    expect(await after.gridPng(jobId)).not.toBeNull();
    expect(await after.imagePng(jobId, 3)).not.toBeNull();
    expect(await after.imagePng(jobId, 4)).toBeNull();
    expect(await after.submit(spec)).toMatchObject({ jobId, duplicate: true });
    // The delivery waited for the bot to come back, and is posted now.
    const deliveries = recordDeliveries(after);
    await waitFor('delivered after restart', () => deliveries.delivered.length === 1);
    expect(deliveries.delivered[0]?.event).toMatchObject({ type: 'done', record: { id: jobId } });
  });

  it('after the TTL, records and images are gone and buttons get "this grid has expired"', async () => {
    const prefix = uniquePrefix('s');
    const jobs = open(prefix, { recordTtlMs: 1500 });
    const deliveries = recordDeliveries(jobs);
    await runWorker(prefix);
    const { jobId } = await jobs.submit(makeSpec());
    await waitFor('delivered', () => deliveries.delivered.length === 1);
    const record = await requireRecord(jobs, jobId);
    expect(record.state.expiresAt - record.state.timings.finishedAt!).toBe(1500);
    expect(await redis.admin.pttl(queueKeys(prefix).grid(jobId))).toBeLessThanOrEqual(1500);
    await waitFor('expiry', async () => (await jobs.record(jobId)) === null, 5000, 100);
    expect(await jobs.status(jobId)).toBeNull();
    expect(await jobs.gridPng(jobId)).toBeNull();
    expect(await jobs.imagePng(jobId, 0)).toBeNull();
    const error = await requireRecord(jobs, jobId).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(UserError);
    expect(error).toMatchObject({ code: ErrorCode.Expired, message: GRID_EXPIRED_MESSAGE });
    expect(GRID_EXPIRED_MESSAGE).toContain('This grid has expired');
    await expect(jobs.cancel(jobId, { surface: 'discord', user: 'user-1' })).rejects.toMatchObject({
      code: ErrorCode.NotFound,
    });
    await expect(jobs.updateMessageRef(jobId, { a: 'b' })).rejects.toMatchObject({
      code: ErrorCode.NotFound,
    });
  });

  it('re-enqueues an accepted job whose enqueue was lost, and frees orphaned slots after the grace', async () => {
    const prefix = uniquePrefix('s');
    const jobs = open(prefix, { limits: { perUser: 1 }, orphanGraceMs: 300 });
    const queue = generateQueue(prefix);
    const spec = makeSpec({ interactionId: 'lost', user: 'carol' });
    const { jobId } = await jobs.submit(spec);
    // As if the submitter died between reserving the slot and enqueueing.
    expect(await queue.remove(jobId)).toBe(1);
    const healed = await jobs.submit(spec);
    expect(healed).toMatchObject({ jobId, duplicate: true, position: 0 });
    // Back with its team's turn (a BullMQ priority).
    expect(await queue.getJobState(jobId)).toBe('prioritized');

    // A reservation that never got its job and is never redelivered frees the user's slot.
    const other = await jobs.submit(makeSpec({ interactionId: 'lost-2', user: 'dave' }));
    expect(await queue.remove(other.jobId)).toBe(1);
    await expect(jobs.submit(makeSpec({ user: 'dave' }))).rejects.toMatchObject({
      code: ErrorCode.RateLimited,
    });
    await new Promise((r) => setTimeout(r, 350));
    await expect(jobs.submit(makeSpec({ user: 'dave' }))).resolves.toMatchObject({ duplicate: false });
  });

  it('updateMessageRef merges fields and validates them', async () => {
    const jobs = open(uniquePrefix('s'));
    const { jobId } = await jobs.submit(makeSpec());
    await jobs.updateMessageRef(jobId, { messageId: '42', channelMessage: 'x' });
    await jobs.updateMessageRef(jobId, { messageId: '43' });
    expect((await jobs.record(jobId))?.state.messageRef).toEqual({
      token: 'tok',
      messageId: '43',
      channelMessage: 'x',
    });
    await expect(jobs.updateMessageRef(jobId, { 'bad key': 'v' })).rejects.toThrow(/invalid messageRef/u);
  });
});
