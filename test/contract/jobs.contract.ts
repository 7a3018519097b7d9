import sharp from 'sharp';
import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCode, InternalError, UserError } from '../../core/errors.ts';
import { jobIdFor, type Surface } from '../../core/jobspec.ts';
import { type DeliveryEvent, describeInitImage, type Jobs, type ProgressEvent } from '../../queue/index.ts';
import { EventLog } from '../helpers/events.ts';
import { makeSpec, waitFor } from '../queue/helpers.ts';

/**
 * One suite for every `Jobs`: the Redis-backed jobs (queue/) and the in-memory FakeJobs the service
 * tests use. It checks the interface as the chat side uses it, not how a side stores records, so a
 * fake that answers differently from the real queue fails here, not in production.
 */

export interface JobsLimits {
  readonly perUser?: number;
  readonly queueDepth?: number;
}

export interface JobsHarness {
  readonly jobs: Jobs;
  /**
   * Runs the queued jobs to the end, reporting progress and delivering them: a worker with a fake
   * engine on the real side (it goes on taking jobs submitted later), the fake's hooks on the other.
   */
  run(): Promise<void>;
  close(): Promise<void>;
}

export type MakeHarness = (limits?: JobsLimits) => Promise<JobsHarness>;

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

function isPng(data: Buffer): boolean {
  return data.subarray(0, 8).equals(PNG_SIGNATURE);
}

interface Seen {
  readonly event: DeliveryEvent;
  readonly attempt: number;
}

/** Records deliveries for a surface the way the service handles them: one `post` step per event. */
function watchDeliveries(
  jobs: Jobs,
  surface: Surface,
  fail?: (event: DeliveryEvent, attempt: number) => void,
) {
  const log = new EventLog<Seen>();
  const posts = new Map<string, number>();
  const subscription = jobs.onDelivery(surface, async (event, ctx) => {
    await ctx.once('post', async () => {
      posts.set(event.record.id, (posts.get(event.record.id) ?? 0) + 1);
      return `message-${event.record.id}`;
    });
    fail?.(event, ctx.attempt);
    log.push({ event, attempt: ctx.attempt });
  });
  return {
    log,
    posts,
    subscription,
    of: (id: string, type: DeliveryEvent['type']) =>
      log.until(`a ${type} delivery of ${id}`, (s) => s.event.record.id === id && s.event.type === type),
  };
}

/** A small picture to start from (its colour makes its SHA-256 differ per test). */
function picture(red: number): Promise<Buffer> {
  return sharp({ create: { width: 64, height: 48, channels: 3, background: { r: red, g: 90, b: 30 } } })
    .png()
    .toBuffer();
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => {
      throw new Error('expected a rejection, but it resolved');
    },
    (error: unknown) => error,
  );
}

export function jobsContract(name: string, make: MakeHarness): void {
  describe(`Jobs contract: ${name}`, () => {
    const open: JobsHarness[] = [];
    async function harness(limits?: JobsLimits): Promise<JobsHarness> {
      const h = await make(limits);
      open.push(h);
      return h;
    }
    afterEach(async () => {
      for (const h of open.splice(0).reverse()) await h.close();
    });

    it('submit: a new job gets the interaction’s id, its seeds and its place in the queue', async () => {
      const { jobs } = await harness();
      const first = makeSpec({ seeds: [5, 6, 7, 8] });
      const second = makeSpec({ user: 'user-2' });
      const a = await jobs.submit(first);
      const b = await jobs.submit(second);
      expect(a).toEqual({
        jobId: jobIdFor('discord', first.origin.interactionId),
        seeds: [5, 6, 7, 8],
        position: 0,
        duplicate: false,
      });
      expect(b).toMatchObject({ jobId: jobIdFor('discord', second.origin.interactionId), position: 1 });
      expect(await jobs.status(a.jobId)).toEqual({ state: 'queued', position: 0 });
      expect(await jobs.status(b.jobId)).toEqual({ state: 'queued', position: 1 });
      // Positions are live: cancelling the first moves the second up.
      await jobs.cancel(a.jobId, { surface: 'discord', user: 'user-1' });
      expect(await jobs.status(b.jobId)).toEqual({ state: 'queued', position: 0 });
    });

    it('submit: the same interaction twice queues one job and answers the first one’s seeds', async () => {
      const { jobs } = await harness();
      const spec = makeSpec({ seeds: [1, 2, 3, 4] });
      const ahead = await jobs.submit(makeSpec({ user: 'user-0' }));
      const first = await jobs.submit(spec);
      // A redelivered interaction whose request was re-parsed with other seeds.
      const again = await jobs.submit({ ...spec, seeds: [9, 9, 9, 9] });
      expect(again).toEqual({ jobId: first.jobId, seeds: [1, 2, 3, 4], position: 1, duplicate: true });
      expect((await jobs.record(first.jobId))?.spec.seeds).toEqual([1, 2, 3, 4]);
      // Nothing new was queued: a job submitted now is third, not fourth.
      const next = await jobs.submit(makeSpec({ user: 'user-3' }));
      expect(next.position).toBe(2);
      expect(ahead.position).toBe(0);
    });

    it('record: what was asked, by whom, where; null for an unknown id', async () => {
      const { jobs } = await harness();
      const spec = makeSpec({
        surface: 'slack',
        user: 'U1',
        prompts: ['a', 'b', 'c', 'd'],
        seeds: [1, 2, 3, 4],
      });
      const { jobId } = await jobs.submit(spec);
      const record = await jobs.record(jobId);
      expect(record).toMatchObject({
        id: jobId,
        spec: {
          prompts: ['a', 'b', 'c', 'd'],
          seeds: [1, 2, 3, 4],
          origin: { surface: 'slack', user: 'U1', channel: spec.origin.channel },
        },
        state: { messageRef: spec.origin.messageRef, status: { state: 'queued' } },
      });
      // The reference is kept once, in the state; the spec is otherwise the one submitted.
      expect(record?.spec).toMatchObject({
        kind: 'imagine',
        steps: spec.steps,
        origin: { ...spec.origin, messageRef: {} },
      });
      expect(await jobs.record('slack-unknown')).toBeNull();
      expect(await jobs.status('slack-unknown')).toBeNull();
    });

    it('submit: a bad spec is refused with a coded error saying what was wrong, and nothing is queued', async () => {
      const { jobs } = await harness();
      const spec = makeSpec({ steps: 0 });
      const error = await rejection(jobs.submit(spec));
      expect(error).toBeInstanceOf(UserError);
      expect(error).toMatchObject({ code: ErrorCode.InvalidRequest });
      expect((error as UserError).message).toMatch(/^That request can't be run: steps: /u);
      expect(await jobs.record(jobIdFor('discord', spec.origin.interactionId))).toBeNull();
      const bad = await rejection(jobs.submit({ ...makeSpec(), prompts: [] }));
      expect(bad).toMatchObject({ code: ErrorCode.InvalidRequest });
      // Still an empty queue.
      expect((await jobs.submit(makeSpec())).position).toBe(0);
    });

    it('submit: past the per-user cap and the queue depth, coded refusals with a retry hint', async () => {
      const { jobs } = await harness({ perUser: 1, queueDepth: 2 });
      await jobs.submit(makeSpec({ user: 'a' }));
      const capped = await rejection(jobs.submit(makeSpec({ user: 'a' })));
      expect(capped).toBeInstanceOf(UserError);
      expect(capped).toMatchObject({ code: ErrorCode.RateLimited });
      expect((capped as UserError).message).toMatch(
        /You already have 1 image job queued or running \(the limit is 1\)/u,
      );
      expect((capped as UserError).retryAfterSeconds).toBeGreaterThan(0);
      await jobs.submit(makeSpec({ user: 'b' }));
      const full = await rejection(jobs.submit(makeSpec({ user: 'c' })));
      expect(full).toMatchObject({ code: ErrorCode.QueueFull });
      expect((full as UserError).message).toMatch(/^The queue is full \(2 jobs waiting or running\)/u);
      expect((full as UserError).retryAfterSeconds).toBeGreaterThan(0);
    });

    it('cancel: the requester may cancel a queued job; the cancel is delivered once and frees the slot', async () => {
      const { jobs } = await harness({ perUser: 1 });
      const deliveries = watchDeliveries(jobs, 'discord');
      const { jobId } = await jobs.submit(makeSpec());
      const cancelled = await jobs.cancel(jobId, { surface: 'discord', user: 'user-1' });
      expect(cancelled).toEqual({ state: 'cancelled', by: 'user-1' });
      expect(await jobs.status(jobId)).toEqual({ state: 'cancelled', by: 'user-1' });
      const seen = await deliveries.of(jobId, 'cancelled');
      expect(seen.event).toMatchObject({ type: 'cancelled', by: 'user-1' });
      expect(seen.event.record.state.status).toEqual({ state: 'cancelled', by: 'user-1' });
      expect(deliveries.posts.get(jobId)).toBe(1);
      // The user's one slot is free again.
      await expect(jobs.submit(makeSpec())).resolves.toMatchObject({ duplicate: false });
    });

    it('cancel: the queue does not decide who may cancel (the service does); it records who cancelled', async () => {
      const { jobs } = await harness();
      const { jobId } = await jobs.submit(makeSpec());
      // The same user id on another surface: the queue cancels and records that user's id.
      await expect(jobs.cancel(jobId, { surface: 'slack', user: 'boss' })).resolves.toEqual({
        state: 'cancelled',
        by: 'boss',
      });
      expect((await jobs.record(jobId))?.state.status).toEqual({ state: 'cancelled', by: 'boss' });
    });

    it('cancel: an ended job answers AlreadyFinished saying how it ended; an unknown one NotFound', async () => {
      const h = await harness();
      const { jobs } = h;
      const deliveries = watchDeliveries(jobs, 'discord');
      const owner = { surface: 'discord', user: 'user-1' } as const;
      const done = await jobs.submit(makeSpec());
      const gone = await jobs.submit(makeSpec());
      await jobs.cancel(gone.jobId, owner);
      await deliveries.of(gone.jobId, 'cancelled');
      await h.run();
      await deliveries.of(done.jobId, 'done');
      await expect(jobs.cancel(done.jobId, owner)).rejects.toMatchObject({
        code: ErrorCode.AlreadyFinished,
        message: 'This job has already finished.',
      });
      const twice = await rejection(jobs.cancel(gone.jobId, owner));
      expect(twice).toBeInstanceOf(UserError);
      expect(twice).toMatchObject({
        code: ErrorCode.AlreadyFinished,
        message: 'This job has already been cancelled.',
      });
      const unknown = await rejection(jobs.cancel('discord-nope', owner));
      expect(unknown).toBeInstanceOf(UserError);
      expect(unknown).toMatchObject({
        code: ErrorCode.NotFound,
        message: 'That job no longer exists (it may have expired).',
      });
    });

    it('updateMessageRef: merges into the record and reaches the delivery; refuses a gone job and bad keys', async () => {
      const h = await harness();
      const { jobs } = h;
      const deliveries = watchDeliveries(jobs, 'discord');
      const { jobId } = await jobs.submit(makeSpec());
      await jobs.updateMessageRef(jobId, { messageId: 'm-1' });
      await jobs.updateMessageRef(jobId, { channelId: 'c-9', messageId: 'm-2' });
      expect((await jobs.record(jobId))?.state.messageRef).toEqual({
        token: 'tok',
        messageId: 'm-2',
        channelId: 'c-9',
      });
      await h.run();
      const seen = await deliveries.of(jobId, 'done');
      expect(seen.event.record.state.messageRef).toEqual({
        token: 'tok',
        messageId: 'm-2',
        channelId: 'c-9',
      });

      const gone = await rejection(jobs.updateMessageRef('discord-nope', { messageId: 'm' }));
      expect(gone).toBeInstanceOf(UserError);
      expect(gone).toMatchObject({ code: ErrorCode.NotFound });
      const bad = await rejection(jobs.updateMessageRef(jobId, { 'no spaces': 'x' }));
      expect(bad).toBeInstanceOf(InternalError);
      expect(bad).toMatchObject({ code: ErrorCode.Internal });
      expect((await jobs.record(jobId))?.state.messageRef).not.toHaveProperty('no spaces');
    });

    it('run: progress to the last step, then one done delivery per job, to its own surface only', async () => {
      const h = await harness();
      const { jobs } = h;
      const progress = { discord: new EventLog<ProgressEvent>(), slack: new EventLog<ProgressEvent>() };
      jobs.onProgress('discord', (event) => progress.discord.push(event));
      jobs.onProgress('slack', (event) => progress.slack.push(event));
      const discord = watchDeliveries(jobs, 'discord');
      const slack = watchDeliveries(jobs, 'slack');
      const first = makeSpec({ steps: 3, seeds: [10, 11, 12, 13] });
      const a = await jobs.submit(first);
      const b = await jobs.submit(makeSpec({ surface: 'slack', steps: 2 }));
      await h.run();

      const done = await discord.of(a.jobId, 'done');
      await slack.of(b.jobId, 'done');
      const last = await progress.discord.until(
        'the last step of a',
        (p) => p.jobId === a.jobId && p.step === 3,
      );
      expect(last).toMatchObject({ surface: 'discord', total: 3 });
      await progress.slack.until('the last step of b', (p) => p.jobId === b.jobId && p.step === 2);
      for (const p of progress.discord.seen) {
        expect(p).toMatchObject({ jobId: a.jobId, surface: 'discord', total: 3 });
        expect(p.step).toBeGreaterThanOrEqual(0);
        expect(p.step).toBeLessThanOrEqual(3);
      }
      expect(progress.slack.seen.every((p) => p.jobId === b.jobId && p.surface === 'slack')).toBe(true);
      expect(discord.log.seen.map((s) => s.event.record.id)).toEqual([a.jobId]);
      expect(slack.log.seen.map((s) => s.event.record.id)).toEqual([b.jobId]);

      if (done.event.type !== 'done') throw new Error('unreachable');
      expect(done.attempt).toBe(1);
      expect(done.event.record).toMatchObject({
        id: a.jobId,
        spec: { seeds: [10, 11, 12, 13] },
        state: { status: { state: 'done' } },
      });
      expect(isPng(done.event.grid)).toBe(true);
      const image = await done.event.image(3);
      expect(isPng(image)).toBe(true);
      expect(await jobs.status(a.jobId)).toEqual({ state: 'done' });
      expect((await jobs.record(a.jobId))?.state.status).toEqual({ state: 'done' });
      expect((await jobs.gridPng(a.jobId))?.equals(done.event.grid)).toBe(true);
      expect((await jobs.imagePng(a.jobId, 3))?.equals(image)).toBe(true);
      expect(await jobs.imagePng(a.jobId, 4)).toBeNull();
      // A redelivered interaction of a finished job: answered from the record, which stays done.
      const again = await jobs.submit({ ...first, seeds: [1, 1, 1, 1] });
      expect(again).toEqual({ jobId: a.jobId, seeds: [10, 11, 12, 13], position: 0, duplicate: true });
      expect(await jobs.status(a.jobId)).toEqual({ state: 'done' });
      expect(await jobs.gridPng('discord-nope')).toBeNull();
    });

    it('delivery: a job that ended while its surface had no handler is delivered once one subscribes', async () => {
      const h = await harness();
      const { jobs } = h;
      const { jobId } = await jobs.submit(makeSpec({ surface: 'slack', steps: 1 }));
      await h.run();
      await waitFor('the job to end', async () => (await jobs.status(jobId))?.state === 'done');
      // As after a restart: the handler comes after the result.
      const deliveries = watchDeliveries(jobs, 'slack');
      const seen = await deliveries.of(jobId, 'done');
      expect(seen.event.record.state.status).toEqual({ state: 'done' });
      expect(deliveries.posts.get(jobId)).toBe(1);
    });

    it('delivery: a throwing handler is retried, and a step it already did is not done again', async () => {
      const h = await harness();
      const { jobs } = h;
      const deliveries = watchDeliveries(jobs, 'discord', (_event, attempt) => {
        if (attempt === 1) throw new Error('chat API 502 after posting');
      });
      const { jobId } = await jobs.submit(makeSpec({ steps: 1 }));
      await h.run();
      const seen = await deliveries.of(jobId, 'done');
      expect(seen.attempt).toBe(2);
      expect(deliveries.posts.get(jobId)).toBe(1);
    });
    it('submit: an uploaded init image travels beside the spec, stored once by its SHA-256, checked before queueing', async () => {
      const h = await harness();
      const { jobs } = h;
      const deliveries = watchDeliveries(jobs, 'discord');
      const bytes = await picture(200);
      const init = await describeInitImage(bytes);
      expect(init).toMatchObject({
        from: 'upload',
        bytes: bytes.length,
        width: 64,
        height: 48,
        mime: 'image/png',
      });
      const spec = { ...makeSpec({ steps: 2 }), v: 2 as const, init, strength: 0.5 };
      const { jobId, duplicate } = await jobs.submit(spec, { initImage: bytes });
      expect(duplicate).toBe(false);
      const record = await jobs.record(jobId);
      // The record names the picture; the bytes themselves are not in it.
      expect(record?.spec).toMatchObject({ kind: 'imagine', init, strength: 0.5 });
      expect(JSON.stringify(record)).not.toContain(bytes.subarray(0, 64).toString('base64'));
      // The same upload again without its bytes (a reroll of an image prompt): the stored blob is used.
      const again = await jobs.submit({
        ...makeSpec({ user: 'user-2', steps: 2 }),
        v: 2,
        init,
        strength: 0.5,
      });
      expect(again.duplicate).toBe(false);
      await h.run();
      await deliveries.of(jobId, 'done');
      await deliveries.of(again.jobId, 'done');

      // A reference whose picture was never stored: refused before queueing, with a clear message.
      const other = await describeInitImage(await picture(10));
      const gone = await rejection(
        jobs.submit({ ...makeSpec({ user: 'user-3' }), v: 2, init: other, strength: 0.5 }),
      );
      expect(gone).toBeInstanceOf(UserError);
      expect(gone).toMatchObject({ code: ErrorCode.Expired });
      expect((gone as UserError).message).toMatch(/uploaded starting image .* no longer stored/u);
      // Bytes that are not the referenced picture.
      const wrong = await rejection(
        jobs.submit(
          { ...makeSpec({ user: 'user-3' }), v: 2, init, strength: 0.5 },
          { initImage: await picture(11) },
        ),
      );
      expect(wrong).toMatchObject({ code: ErrorCode.InvalidRequest });
      expect((wrong as UserError).message).toMatch(/does not match the job's reference \(its sha256 is/u);
      // Over the byte limit: refused before anything is read or stored.
      const huge = new Uint8Array(20 * 1024 * 1024 + 1);
      const big = await rejection(
        jobs.submit({ ...makeSpec({ user: 'user-3' }), v: 2, init, strength: 0.5 }, { initImage: huge }),
      );
      expect(big).toMatchObject({ code: ErrorCode.BodyTooLarge });
      expect((big as UserError).message).toMatch(/at most 20971520 bytes/u);
      // Bytes with a text-to-image spec.
      const stray = await rejection(jobs.submit(makeSpec({ user: 'user-3' }), { initImage: bytes }));
      expect(stray).toMatchObject({ code: ErrorCode.InvalidRequest });
      // None of the refused ones was queued.
      expect((await jobs.submit(makeSpec({ user: 'user-3' }))).position).toBe(0);
    });

    it('submit: a vary job of a finished grid keeps its parent, image index, strength and seeds in its record', async () => {
      const h = await harness();
      const { jobs } = h;
      const deliveries = watchDeliveries(jobs, 'discord');
      const parent = await jobs.submit(makeSpec({ steps: 1 }));
      await h.run();
      await deliveries.of(parent.jobId, 'done');
      const vary = {
        ...makeSpec({ steps: 2, seeds: [70, 71, 72, 73] }),
        v: 2 as const,
        kind: 'vary' as const,
        parent: { gridId: parent.jobId, index: 1 },
        init: { from: 'grid' as const, gridId: parent.jobId, index: 1 },
        strength: 0.35,
      };
      const { jobId } = await jobs.submit(vary);
      await h.run();
      const done = await deliveries.of(jobId, 'done');
      expect(done.event.record.spec).toMatchObject({
        kind: 'vary',
        parent: { gridId: parent.jobId, index: 1 },
        init: { from: 'grid', gridId: parent.jobId, index: 1 },
        strength: 0.35,
        seeds: [70, 71, 72, 73],
      });
      // A vary whose init is not its parent's image is refused.
      const bad = await rejection(
        jobs.submit({
          ...vary,
          origin: { ...vary.origin, interactionId: 'i-other' },
          init: { ...vary.init, index: 2 },
        }),
      );
      expect(bad).toMatchObject({ code: ErrorCode.InvalidRequest });
      expect((bad as UserError).message).toMatch(/init: a vary job starts from its parent's image/u);
    });
  });
}
