import fc from 'fast-check';
import sharp from 'sharp';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { fitUpload } from '../../bots/service/encode.ts';
import {
  ConversationService,
  decodeControl,
  displayPrompt,
  encodeControl,
  MAX_CONTROL_ID_LENGTH,
  MESSAGES,
  type ServiceSettings,
} from '../../bots/service.ts';
import type { ControlPress, ImagineCommand, JobTarget } from '../../bots/surface.ts';
import { DEFAULT_SUFFIXES } from '../../core/config.ts';
import { somethingWentWrong } from '../../core/errors.ts';
import { JOB_ID_RE } from '../../core/jobspec.ts';
import { alreadyEndedError, queueFullError } from '../../queue/index.ts';
import { EventLog } from '../helpers/events.ts';
import { FakeJobs } from './fake-jobs.ts';
import { RecordingReply, RecordingSurface } from './recording-surface.ts';
import { SERVICE_SETTINGS } from './service-settings.ts';

const SETTINGS: ServiceSettings = {
  ...SERVICE_SETTINGS,
  adminUsers: ['discord:admin'],
  progressIntervalMs: 2000,
};

async function png(width: number, height: number, seed = 1): Promise<Buffer> {
  const data = Buffer.alloc(width * height * 3);
  let s = seed;
  for (let i = 0; i < data.length; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    data[i] = s >>> 24;
  }
  return sharp(data, { raw: { width, height, channels: 3 } })
    .png()
    .toBuffer();
}

function command(
  over: Partial<ImagineCommand> & ({ text: string } | { options: { prompt: string } }),
): ImagineCommand {
  return {
    surface: 'discord',
    user: 'u1',
    userName: 'Ada',
    channel: 'c1',
    interactionId: 'i1',
    messageRef: { token: 't1' },
    ...over,
  } as ImagineCommand;
}

function press(controlId: string, over: Partial<ControlPress> = {}): ControlPress {
  return {
    surface: 'discord',
    user: 'u1',
    channel: 'c1',
    interactionId: `p-${Math.random()}`,
    controlId,
    ...over,
  };
}

/** A fixed uniform source: base seed = floor(0.25 * 2^32). */
const random = () => 0.25;
const BASE = 2 ** 30;

describe('ConversationService', () => {
  let jobs: FakeJobs;
  let surface: RecordingSurface;
  let service: ConversationService;
  let clock: number;

  beforeEach(() => {
    jobs = new FakeJobs();
    surface = new RecordingSurface();
    clock = 1_700_000_000_000;
    service = new ConversationService({ jobs, settings: SETTINGS, random, now: () => clock });
    service.attach(surface);
  });
  afterEach(async () => {
    await service.close();
  });

  it('acknowledges before submitting, then shows seeds and queue position', async () => {
    const log: string[] = [];
    const submit = jobs.submit.bind(jobs);
    jobs.submit = async (spec) => {
      log.push('submit');
      return submit(spec);
    };
    const reply = new RecordingReply(log);
    await service.imagine(command({ text: 'a lighthouse at dusk --steps 20' }), reply);
    expect(log).toEqual(['accept', 'submit', 'queued']);
    const [queued] = reply.only('queued');
    expect(queued?.view.seeds).toEqual([BASE, BASE + 1, BASE + 2, BASE + 3]);
    expect(queued?.view.position).toBe(0);
    expect(queued?.view.text).toContain('a lighthouse at dusk');
    expect(queued?.view.text).toContain(String(BASE + 3));
    expect(queued?.view.controls.flat().map((c) => c.action)).toEqual(['cancel']);
    const record = jobs.records.get('discord-i1');
    expect(record?.spec.steps).toBe(20);
    expect(record?.spec.origin).toMatchObject({
      user: 'u1',
      userName: 'Ada',
      channel: 'c1',
      interactionId: 'i1',
    });
    // The reply's patch is stored for later deliveries.
    expect(record?.state.messageRef).toEqual({ token: 't1', messageId: 'm-1' });
  });

  it('holds new-job work while acknowledgements are in flight (acks first), bounded', async () => {
    // Fake timers: "still waiting at 99 ms, submitted at 100 ms" is then exact, with no real waits.
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    let release: () => void = () => {};
    try {
      const held = new RecordingReply();
      held.accept = () =>
        new Promise<void>((resolve) => {
          release = resolve;
        });
      const done = service.imagine(command({ text: 'a cat' }), held);
      // Within the bound (250 ms by default) nothing is submitted while the acknowledgement is in flight.
      await vi.advanceTimersByTimeAsync(249);
      expect(jobs.submitted).toEqual([]);
      release();
      await done;
      expect(jobs.submitted).toEqual(['discord-i1']);

      // An acknowledgement that never settles delays submission by ackPriorityMs, no more.
      const bounded = new ConversationService({ jobs, settings: SETTINGS, random, ackPriorityMs: 100 });
      const detach = bounded.attach(new RecordingSurface({}, 'slack'));
      const stuck = new RecordingReply();
      stuck.accept = () => new Promise<void>(() => {});
      void bounded.imagine({ ...command({ text: 'a dog' }), surface: 'slack', interactionId: 'i9' }, stuck);
      await vi.advanceTimersByTimeAsync(99);
      expect(jobs.submitted).not.toContain('slack-i9');
      await vi.advanceTimersByTimeAsync(1);
      expect(jobs.submitted).toContain('slack-i9');
      await detach(); // (not close(): it would wait for the acknowledgement that never settles)
    } finally {
      release(); // (so that a failed check does not leave close() waiting for it)
      vi.useRealTimers();
    }
  });

  it('lets a bounded number of interactions work at once on every surface (acknowledged first)', async () => {
    const bounded = new ConversationService({
      jobs,
      settings: SETTINGS,
      random,
      maxConcurrentInteractions: 1,
    });
    bounded.attach(new RecordingSurface({}, 'slack'));
    const submit = jobs.submit.bind(jobs);
    let release: () => void = () => {};
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    const started: string[] = [];
    jobs.submit = async (spec) => {
      started.push(spec.origin.interactionId);
      if (spec.origin.interactionId === 's1') await held;
      return submit(spec);
    };
    const first = new RecordingReply();
    const second = new RecordingReply();
    const slack = (id: string) => ({
      ...command({ text: 'a cat' }),
      surface: 'slack' as const,
      interactionId: id,
    });
    const a = bounded.imagine(slack('s1'), first);
    const b = bounded.imagine(slack('s2'), second);
    await vi.waitFor(() => expect(started).toContain('s1'));
    // Everything the second could do without a slot (all of it promise work) is done by the next turn.
    await new Promise((resolve) => setImmediate(resolve));
    // Both were acknowledged at once; the second waits for the slot, not for its acknowledgement.
    expect(second.calls.map((c) => c.method)).toEqual(['accept']);
    expect(started).toEqual(['s1']);
    release();
    expect(await Promise.all([a, b])).toEqual([{ jobId: 'slack-s1' }, { jobId: 'slack-s2' }]);
    expect(started).toEqual(['s1', 's2']);
    await bounded.close();
  });

  it('accepts typed options and a user seed', async () => {
    const reply = new RecordingReply();
    await service.imagine(
      command({ options: { prompt: 'a cat', seed: 42, sampler: 'euler_a', aspect: '3:2' } }),
      reply,
    );
    const record = jobs.records.get('discord-i1');
    expect(record?.spec.seeds).toEqual([42, 43, 44, 45]);
    expect(record?.spec.sampler).toBe('euler_a');
    expect(record!.spec.width).toBeGreaterThan(record!.spec.height);
  });

  it('answers bad input privately and queues nothing', async () => {
    const reply = new RecordingReply();
    await service.imagine(command({ text: 'a cat --steps 500' }), reply);
    expect(reply.calls).toHaveLength(1);
    expect(reply.calls[0]).toMatchObject({ method: 'privately' });
    expect((reply.calls[0] as { text: string }).text).toMatch(/Steps must be a whole number from 1 to 50/);
    expect(jobs.submitted).toHaveLength(0);

    const unknown = new RecordingReply();
    await service.imagine(command({ text: 'a cat --frobnicate 3', interactionId: 'i2' }), unknown);
    expect(unknown.only('privately')[0]?.text).toMatch(/Unknown option .*--seed/);
    expect(jobs.submitted).toHaveLength(0);
  });

  it('queues one job for an interaction delivered twice', async () => {
    const first = new RecordingReply();
    const second = new RecordingReply();
    second.failAccept = true;
    const results = await Promise.all([
      service.imagine(command({ text: 'a cat' }), first),
      service.imagine(command({ text: 'a cat' }), second),
    ]);
    expect(jobs.submitted).toEqual(['discord-i1']);
    // Both answer with the queue's id for the one job, the redelivery included.
    expect(results).toEqual([{ jobId: 'discord-i1' }, { jobId: 'discord-i1' }]);
    expect(first.only('queued')).toHaveLength(1);
    expect(second.only('queued')).toHaveLength(0);
  });

  it('a result that arrives while the queued message is being posted is shown after it', async () => {
    const grid = await png(16, 16);
    const reply = new RecordingReply();
    let posting: () => void = () => {};
    const posted = new Promise<void>((resolve) => {
      posting = resolve;
    });
    let release: () => void = () => {};
    reply.queued = async (view) => {
      reply.calls.push({ method: 'queued', view });
      posting();
      await new Promise<void>((resolve) => {
        release = resolve;
      });
      return { messageId: 'm-1' };
    };
    const made = service.imagine(command({ text: 'a cat' }), reply);
    await posted;
    // The worker finishes now: the service knows the job only from the record's origin, not its id.
    const delivered = jobs.complete('discord-i1', { grid, images: [grid, grid, grid, grid] });
    await vi.waitFor(() => expect(jobs.records.get('discord-i1')?.state.status.state).toBe('done'));
    expect(surface.only('grid')).toHaveLength(0);
    release();
    expect(await made).toEqual({ jobId: 'discord-i1' });
    await delivered;
    const [shown] = surface.only('grid');
    // Shown once, on the message the queued reply made.
    expect(surface.only('grid')).toHaveLength(1);
    expect(shown?.target.messageRef).toEqual({ token: 't1', messageId: 'm-1' });
  });

  it('shows a submit refusal (queue full) privately after accepting', async () => {
    const full = new FakeJobs({ limits: { queueDepth: 1 } });
    const strict = new ConversationService({ jobs: full, settings: SETTINGS, random });
    strict.attach(new RecordingSurface());
    try {
      await strict.imagine(command({ text: 'a dog', user: 'u2', interactionId: 'i0' }), new RecordingReply());
      const reply = new RecordingReply();
      await strict.imagine(command({ text: 'a cat' }), reply);
      expect(reply.calls.map((c) => c.method)).toEqual(['accept', 'privately']);
      expect(reply.only('privately')[0]?.text).toBe(queueFullError(1, 1, 30, { id: 'discord-i1' }).message);
      expect(full.submitted).toEqual(['discord-i0']);
    } finally {
      await strict.close();
    }
  });

  it('hides internal submit errors behind an error id', async () => {
    jobs.submitError = new Error('redis exploded');
    const reply = new RecordingReply();
    await service.imagine(command({ text: 'a cat' }), reply);
    const text = reply.only('privately')[0]?.text ?? '';
    expect(text).toMatch(/error id err_[a-z0-9]{10}/);
    expect(text).not.toContain('redis');
  });

  it('renders a finished grid once, with seeds, settings, controls and notes', async () => {
    await service.imagine(command({ text: 'a lighthouse --no fog' }), new RecordingReply());
    const grid = await png(64, 64);
    surface.failNext = 1; // the first attempt fails (chat API down): the delivery is retried
    await jobs.complete('discord-i1', {
      grid,
      images: [grid, grid, grid, grid],
      truncatedTokens: [3, 3, 3, 3],
      demo: true,
    });
    // The retried delivery and a second delivery of the same event both post nothing new.
    await jobs.deliver({
      type: 'done',
      record: jobs.records.get('discord-i1')!,
      grid,
      image: async () => grid,
    });
    const grids = surface.only('grid');
    expect(grids).toHaveLength(1);
    const view = grids[0]!.view;
    expect(view.file.contentType).toBe('image/png');
    expect(view.file.data.equals(grid)).toBe(true);
    expect(view.images.map((i) => i.seed)).toEqual([BASE, BASE + 1, BASE + 2, BASE + 3]);
    expect(view.text).toContain('negative: fog');
    expect(view.text).toContain('pndm · 25 steps · cfg 7.5 · 512×512');
    expect(view.notes.join('\n')).toMatch(/77-token limit; the last 3 tokens were ignored/);
    expect(view.notes.join('\n')).toMatch(/demo model/);
    expect(view.controls.map((row) => row.map((c) => c.label))).toEqual([
      ['1', '2', '3', '4', '🔄'],
      ['U1', 'U2', 'U3', 'U4'],
      ['V1', 'V2', 'V3', 'V4'],
    ]);
    for (const control of view.controls.flat()) {
      expect(decodeControl(control.id)).toEqual({
        action: control.action,
        recordId: 'discord-i1',
        index: control.index,
        ...(control.action === 'vary' ? { strength: 'subtle' } : {}),
      });
    }
    expect(grids[0]!.target).toMatchObject({
      recordId: 'discord-i1',
      channel: 'c1',
      owner: 'u1',
      messageRef: { token: 't1', messageId: 'm-1' },
      requestedAt: clock,
    });
  });

  it('falls back to WebP or JPEG when the grid is over the upload limit', async () => {
    const big = await png(512, 512);
    const limit = Math.floor(big.length / 3);
    const small = new RecordingSurface({ maxUploadBytes: limit });
    const fitted = await fitUpload(big, 'g', limit);
    expect(fitted.data.length).toBeLessThanOrEqual(limit);
    expect(['image/webp', 'image/jpeg']).toContain(fitted.contentType);
    const meta = await sharp(fitted.data).metadata();
    expect(meta.format).toBe(fitted.contentType === 'image/webp' ? 'webp' : 'jpeg');
    // Only a truly tiny limit downscales.
    const tiny = await fitUpload(big, 'g', 2000);
    expect(tiny.data.length).toBeLessThanOrEqual(2000);
    expect(small.limits.maxUploadBytes).toBe(limit);
  });

  it('refine: four images on the pressed seed with the suffixes, as a new job', async () => {
    await service.imagine(command({ text: 'a lighthouse' }), new RecordingReply());
    const grid = await png(16, 16);
    await jobs.complete('discord-i1', { grid, images: [grid, grid, grid, grid] });
    const reply = new RecordingReply();
    const refineTwo = surface.only('grid')[0]!.view.controls[0]![1]!;
    expect(refineTwo.label).toBe('2');
    const result = await service.press(press(refineTwo.id, { user: 'u2', interactionId: 'press-1' }), reply);
    expect(result).toEqual({ jobId: 'discord-press-1' });
    expect(reply.calls.map((c) => c.method)).toEqual(['accept', 'queued']);
    const record = jobs.records.get('discord-press-1')!;
    expect(record.spec.kind).toBe('refine');
    expect(record.spec.parent).toEqual({ gridId: 'discord-i1', index: 1 });
    expect(record.spec.seeds).toEqual([BASE + 1, BASE + 1, BASE + 1, BASE + 1]);
    expect(record.spec.prompts).toEqual(DEFAULT_SUFFIXES.map((s) => `a lighthouse${s}`));
    expect(record.spec.origin.user).toBe('u2');
    expect(reply.only('queued')[0]?.view.text).toContain('refining image 2');
    expect(reply.only('queued')[0]?.view.text).toContain('a lighthouse');
  });

  it('reroll: same prompts, new seeds', async () => {
    await service.imagine(command({ text: 'a lighthouse --seed 7' }), new RecordingReply());
    const grid = await png(16, 16);
    await jobs.complete('discord-i1', { grid, images: [grid, grid, grid, grid] });
    const reroll = encodeControl({ action: 'reroll', recordId: 'discord-i1', index: 0 });
    await service.press(press(reroll, { interactionId: 'press-r' }), new RecordingReply());
    const record = jobs.records.get('discord-press-r')!;
    expect(record.spec.kind).toBe('reroll');
    expect(record.spec.seeds).toEqual([BASE, BASE + 1, BASE + 2, BASE + 3]);
    expect(record.spec.seeds).not.toContain(7);
    expect(record.spec.prompts).toEqual(['a lighthouse', 'a lighthouse', 'a lighthouse', 'a lighthouse']);
  });

  it('upscale posts the full-size image; expired and unknown records get the expired message', async () => {
    await service.imagine(command({ text: 'a lighthouse' }), new RecordingReply());
    const images = await Promise.all([1, 2, 3, 4].map((s) => png(32, 32, s)));
    await jobs.complete('discord-i1', { grid: images[0]!, images });
    const reply = new RecordingReply();
    await service.press(press(encodeControl({ action: 'upscale', recordId: 'discord-i1', index: 2 })), reply);
    const [image] = reply.only('image');
    expect(image?.view.file.data.equals(images[2]!)).toBe(true);
    expect(image?.view.seed).toBe(BASE + 2);
    expect(image?.view.text).toContain('Image 3');

    jobs.expire('discord-i1');
    for (const action of ['upscale', 'refine', 'reroll'] as const) {
      const expired = new RecordingReply();
      await service.press(press(encodeControl({ action, recordId: 'discord-i1', index: 0 })), expired);
      expect(expired.calls.map((c) => c.method)).toEqual(['accept', 'privately']);
      expect(expired.only('privately')[0]?.text).toBe(MESSAGES.expired(30));
      expect(expired.only('privately')[0]?.text).toMatch(/^This grid has expired/);
    }
  });

  it('a full-size image being made again does not hold up other interactions', async () => {
    await service.close();
    service = new ConversationService({ jobs, settings: SETTINGS, random, maxConcurrentInteractions: 1 });
    service.attach(surface);
    await service.imagine(command({ text: 'a lighthouse' }), new RecordingReply());
    const images = await Promise.all([1, 2, 3, 4].map((s) => png(32, 32, s)));
    await jobs.complete('discord-i1', { grid: images[0]!, images });
    // The PNG is gone and being made again through the queue: imagePng waits until it is ready.
    const imagePng = jobs.imagePng.bind(jobs);
    let rendered: () => void = () => {};
    const ready = new Promise<void>((resolve) => {
      rendered = resolve;
    });
    let waiting = false;
    jobs.imagePng = async (id, index) => {
      waiting = true;
      await ready;
      return imagePng(id, index);
    };
    const upscale = new RecordingReply();
    const pressed = service.press(
      press(encodeControl({ action: 'upscale', recordId: 'discord-i1', index: 1 })),
      upscale,
    );
    await vi.waitFor(() => expect(waiting).toBe(true));
    // The only slot is free again: a new command is queued while the image is still being made.
    const next = new RecordingReply();
    expect(await service.imagine(command({ text: 'a cat', interactionId: 'i2' }), next)).toEqual({
      jobId: 'discord-i2',
    });
    expect(next.only('queued')).toHaveLength(1);
    expect(upscale.only('image')).toHaveLength(0);
    rendered();
    expect(await pressed).toEqual({ jobId: 'discord-i1' });
    expect(upscale.only('image')[0]?.view.file.data.equals(images[1]!)).toBe(true);
  });

  it('refuses tampered control ids privately without touching the queue', async () => {
    const before = jobs.submitted.length;
    for (const id of [
      'refine:discord-i1:7',
      'explode:discord-i1:0',
      'refine:../../etc:0',
      'x'.repeat(101),
      'refine:a b:1',
    ]) {
      const reply = new RecordingReply();
      await service.press(press(id), reply);
      expect(reply.calls).toEqual([{ method: 'privately', text: MESSAGES.invalidControl }]);
    }
    expect(jobs.submitted.length).toBe(before);
  });

  it('owner-only setting refuses others privately', async () => {
    const strict = new ConversationService({
      jobs,
      settings: { ...SETTINGS, ownerOnlyButtons: true },
      random,
    });
    await service.close();
    strict.attach(surface);
    service = strict;
    await service.imagine(command({ text: 'a lighthouse' }), new RecordingReply());
    const grid = await png(16, 16);
    await jobs.complete('discord-i1', { grid, images: [grid, grid, grid, grid] });
    const other = new RecordingReply();
    await service.press(
      press(encodeControl({ action: 'refine', recordId: 'discord-i1', index: 0 }), { user: 'u2' }),
      other,
    );
    expect(other.only('privately')[0]?.text).toBe(MESSAGES.notOwner);
    const owner = new RecordingReply();
    await service.press(
      press(encodeControl({ action: 'refine', recordId: 'discord-i1', index: 0 }), { user: 'u1' }),
      owner,
    );
    expect(owner.only('queued')).toHaveLength(1);
  });

  it('cancel: the requester or an admin may; others are refused; the cancelled message is rendered once', async () => {
    await service.imagine(command({ text: 'a lighthouse' }), new RecordingReply());
    const cancel = encodeControl({ action: 'cancel', recordId: 'discord-i1', index: 0 });
    const stranger = new RecordingReply();
    await service.press(press(cancel, { user: 'u9' }), stranger);
    expect(stranger.only('privately')[0]?.text).toBe(MESSAGES.notCanceller);
    // The same user id on another surface is another person.
    service.attach(new RecordingSurface({}, 'slack'));
    const elsewhere = new RecordingReply();
    await service.press(press(cancel, { surface: 'slack', user: 'u1' }), elsewhere);
    // (and a press on another surface is never in the grid's channel)
    expect(elsewhere.only('privately')[0]?.text).toBe(MESSAGES.otherChannel);
    expect(jobs.records.get('discord-i1')?.state.status.state).toBe('queued');
    const admin = new RecordingReply();
    expect(await service.press(press(cancel, { user: 'admin' }), admin)).toEqual({ jobId: 'discord-i1' });
    expect(admin.only('privately')).toHaveLength(0);
    expect(jobs.records.get('discord-i1')?.state.status).toEqual({ state: 'cancelled', by: 'admin' });
    const cancelled = surface.only('cancelled');
    expect(cancelled).toHaveLength(1);
    expect(cancelled[0]?.view.text).toContain('Cancelled by @admin');
    const again = new RecordingReply();
    await service.press(press(cancel, { user: 'u1' }), again);
    expect(again.only('privately')[0]?.text).toBe(alreadyEndedError('discord-i1', 'cancelled').message);
    expect(again.only('privately')[0]?.text).toMatch(/already been cancelled/);
  });

  it('failure messages: the reason when user-facing, otherwise only the error id', async () => {
    await service.imagine(command({ text: 'a cat', interactionId: 'f1' }), new RecordingReply());
    await service.imagine(command({ text: 'a dog', interactionId: 'f2' }), new RecordingReply());
    await jobs.fail('discord-f1', { reason: 'The image was too large for this worker.', userFacing: true });
    await jobs.fail('discord-f2', { reason: 'CUDA OOM at 0x7f', errorId: 'err_abc', userFacing: false });
    const [a, b] = surface.only('failed');
    expect(a?.view.text).toContain('The image was too large for this worker.');
    expect(b?.view.text).toContain('err_abc');
    expect(b?.view.text).not.toContain('CUDA');
    // The one "something went wrong" text, core's, as every internal error shows it.
    expect(b?.view.reason).toBe(somethingWentWrong('err_abc'));
  });

  it('progress: at most one edit per interval, the latest shown, none after the result', async () => {
    const preview = await png(8, 8);
    const grid = await png(16, 16);
    await service.close();
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    try {
      service = new ConversationService({
        jobs,
        settings: { ...SETTINGS, progressIntervalMs: 2000 },
        random,
      });
      service.attach(surface);
      await service.imagine(command({ text: 'a cat' }), new RecordingReply());
      // A burst: one edit, at once, showing the latest step and the preview that came with an earlier one.
      jobs.progress({ jobId: 'discord-i1', step: 1, total: 20, preview });
      for (let step = 2; step <= 10; step++) jobs.progress({ jobId: 'discord-i1', step, total: 20 });
      await vi.advanceTimersByTimeAsync(0);
      let edits = surface.only('progress');
      expect(edits).toHaveLength(1);
      expect(edits[0]?.view).toMatchObject({ step: 10, total: 20, percent: 50 });
      expect(edits[0]?.view.preview?.data.equals(preview)).toBe(true);
      expect(edits[0]?.target.messageRef).toEqual({ token: 't1', messageId: 'm-1' });
      // More events within the interval wait for it to pass (trailing edge), then show the latest.
      await vi.advanceTimersByTimeAsync(500);
      for (let step = 11; step <= 15; step++) jobs.progress({ jobId: 'discord-i1', step, total: 20 });
      await vi.advanceTimersByTimeAsync(1499);
      expect(surface.only('progress')).toHaveLength(1);
      await vi.advanceTimersByTimeAsync(1);
      edits = surface.only('progress');
      expect(edits).toHaveLength(2);
      expect(edits[1]?.view.step).toBe(15);
      expect(edits[1]?.view.preview).toBeUndefined(); // no new preview: none re-sent
      // A pending event is dropped once the result arrives, and later ones are ignored.
      jobs.progress({ jobId: 'discord-i1', step: 16, total: 20 });
      await jobs.complete('discord-i1', { grid, images: [grid, grid, grid, grid] });
      jobs.progress({ jobId: 'discord-i1', step: 17, total: 20 });
      await vi.advanceTimersByTimeAsync(5000);
      expect(surface.only('progress')).toHaveLength(2);
      expect(surface.calls.at(-1)?.method).toBe('grid');
    } finally {
      vi.useRealTimers();
    }
  });

  it('progress after a restart reads the target from the record', async () => {
    await service.imagine(command({ text: 'a cat' }), new RecordingReply());
    await service.close();
    const surface2 = new RecordingSurface();
    service = new ConversationService({ jobs, settings: { ...SETTINGS, progressIntervalMs: 10 }, random });
    service.attach(surface2);
    const shown = new EventLog<JobTarget>();
    const show = surface2.showProgress.bind(surface2);
    surface2.showProgress = async (target, view) => {
      await show(target, view);
      shown.push(target);
    };
    jobs.progress({ jobId: 'discord-i1', step: 1, total: 4 });
    const target = await shown.until('a progress edit', () => true);
    expect(target.messageRef).toEqual({ token: 't1', messageId: 'm-1' });
    expect(surface2.only('progress')[0]?.target.messageRef).toEqual({ token: 't1', messageId: 'm-1' });
  });
});

describe('control codec', () => {
  const action = fc.constantFrom('refine', 'reroll', 'upscale', 'cancel' as const);
  const recordId = fc.stringMatching(/^[a-z]{1,8}-[A-Za-z0-9_-]{1,64}$/);

  it('round-trips every control, within Discord’s 100 characters', () => {
    fc.assert(
      fc.property(action, recordId, fc.integer({ min: 0, max: 3 }), (a, id, i) => {
        const index = a === 'reroll' || a === 'cancel' ? 0 : i;
        fc.pre(JOB_ID_RE.test(id));
        const encoded = encodeControl({ action: a, recordId: id, index });
        expect(encoded.length).toBeLessThanOrEqual(MAX_CONTROL_ID_LENGTH);
        expect(decodeControl(encoded)).toEqual({ action: a, recordId: id, index });
      }),
    );
  });

  it('rejects anything it did not produce', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 120 }), (s) => {
        const decoded = decodeControl(s);
        if (decoded !== null) expect(encodeControl(decoded)).toBe(s);
      }),
    );
    expect(decodeControl('reroll:discord-1:2')).toBeNull();
    expect(decodeControl('upscale:discord-1:4')).toBeNull();
    expect(decodeControl('upscale:discord-1:-1')).toBeNull();
    expect(decodeControl('upscale:discord-1:1:extra')).toBeNull();
  });

  it('displayPrompt finds the stem of refined prompts', () => {
    expect(displayPrompt(DEFAULT_SUFFIXES.map((s) => `a lighthouse${s}`))).toBe('a lighthouse');
    expect(displayPrompt(['x', 'x'])).toBe('x');
  });
});
