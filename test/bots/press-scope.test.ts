import sharp from 'sharp';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { DecodedControl } from '../../bots/service/controls.ts';
import { ConversationService, encodeControl, MESSAGES, type ServiceSettings } from '../../bots/service.ts';
import type { DailyQuota } from '../../bots/settings/quota.ts';
import type { TeamSettingsStore } from '../../bots/settings/store.ts';
import type { ControlPress, ImagineCommand } from '../../bots/surface.ts';
import { startTeamSupport } from '../helpers/teams.ts';
import { uniquePrefix, useTestRedis } from '../helpers/use-redis.ts';
import { FakeJobs } from './fake-jobs.ts';
import { RecordingReply, RecordingSurface } from './recording-surface.ts';
import { SERVICE_SETTINGS } from './service-settings.ts';

/**
 * Forged button ids and the new buttons' rules: a press acts only in its grid's channel (every action,
 * cancel included, whoever presses: owner, team admin, anyone); Vary / Upscale ×2 of an image the
 * channel's NSFW policy withholds are refused; Vary and Upscale ×2 count against the daily quota.
 */

const SETTINGS: ServiceSettings = {
  ...SERVICE_SETTINGS,
  limits: { ...SERVICE_SETTINGS.limits, defaultWidth: 384, defaultHeight: 384 },
  adminUsers: ['discord:admin'],
};

const SILENT = { debug() {}, info() {}, warn() {}, error() {} };

function command(over: Partial<ImagineCommand> = {}): ImagineCommand {
  return {
    surface: 'discord',
    user: 'u1',
    workspace: 'g1',
    channel: 'c1',
    interactionId: `i-${Math.random()}`,
    text: 'a lighthouse',
    ...over,
  } as ImagineCommand;
}

function press(control: DecodedControl, over: Partial<ControlPress> = {}): ControlPress {
  return {
    surface: 'discord',
    user: 'u1',
    workspace: 'g1',
    channel: 'c1',
    interactionId: `p-${Math.random()}`,
    controlId: encodeControl(control),
    ...over,
  };
}

async function tile(seed: number): Promise<Buffer> {
  return sharp({ create: { width: 16, height: 16, channels: 3, background: { r: seed * 40, g: 10, b: 10 } } })
    .png()
    .toBuffer();
}

async function finishedGrid(jobs: FakeJobs, nsfw?: boolean[]): Promise<string> {
  const id = jobs.submitted.at(-1)!;
  const images = await Promise.all([1, 2, 3, 4].map(tile));
  await jobs.complete(id, { grid: images[0]!, images });
  if (nsfw !== undefined) {
    const record = jobs.records.get(id)!;
    jobs.records.set(id, { ...record, result: { ...record.result!, nsfw } });
  }
  return id;
}

const GRID_ACTIONS: readonly Omit<DecodedControl, 'recordId'>[] = [
  { action: 'refine', index: 1 },
  { action: 'reroll', index: 0 },
  { action: 'upscale', index: 1 },
  { action: 'vary', index: 1, strength: 'strong' },
  { action: 'upscale2x', index: 1 },
];

describe('button presses: forged ids, NSFW and the new buttons (FakeJobs)', () => {
  let jobs: FakeJobs;
  let service: ConversationService;

  beforeEach(() => {
    jobs = new FakeJobs();
    service = new ConversationService({ jobs, settings: SETTINGS, random: () => 0.25, log: SILENT });
    service.attach(new RecordingSurface());
  });
  afterEach(async () => {
    await service.close();
  });

  it("refuses every action on another channel's grid, even for its owner and an admin, and does nothing", async () => {
    await service.imagine(command(), new RecordingReply());
    const id = await finishedGrid(jobs);
    const before = jobs.submitted.length;
    for (const control of GRID_ACTIONS) {
      for (const where of [
        { channel: 'c2' },
        { channel: 'c2', workspace: 'g2', user: 'admin' },
        { channel: 'c9', user: 'u7' },
      ]) {
        const reply = new RecordingReply();
        await service.press(press({ ...control, recordId: id }, where), reply);
        expect(reply.only('privately').map((p) => p.text)).toEqual([MESSAGES.otherChannel]);
        expect(reply.only('image')).toHaveLength(0);
      }
    }
    expect(jobs.submitted.length).toBe(before);
    // In its own channel every one of them works (the baseline the refusal is measured against).
    for (const control of GRID_ACTIONS) {
      const reply = new RecordingReply();
      await service.press(press({ ...control, recordId: id }, { user: `u-${control.action}` }), reply);
      expect(reply.only('privately')).toHaveLength(0);
    }
    expect(jobs.submitted.length).toBe(before + 4);
  });

  it("an admin can't cancel another channel's job by forging its id", async () => {
    await service.imagine(command({ channel: 'c2' }), new RecordingReply());
    const id = jobs.submitted.at(-1)!;
    const reply = new RecordingReply();
    await service.press(press({ action: 'cancel', recordId: id, index: 0 }, { user: 'admin' }), reply);
    expect(reply.only('privately')[0]?.text).toBe(MESSAGES.otherChannel);
    expect(jobs.records.get(id)?.state.status.state).toBe('queued');
    const there = new RecordingReply();
    await service.press(
      press({ action: 'cancel', recordId: id, index: 0 }, { user: 'admin', channel: 'c2' }),
      there,
    );
    expect(jobs.records.get(id)?.state.status.state).toBe('cancelled');
  });

  it('refuses Vary and Upscale ×2 of an image the policy withholds here; the others and refine still work', async () => {
    await service.imagine(command(), new RecordingReply());
    const id = await finishedGrid(jobs, [false, true, false, false]);
    const before = jobs.submitted.length;
    for (const control of [
      { action: 'vary', index: 1, strength: 'subtle' },
      { action: 'vary', index: 1, strength: 'strong' },
      { action: 'upscale2x', index: 1 },
    ] as const) {
      const reply = new RecordingReply();
      await service.press(press({ ...control, recordId: id }), reply);
      expect(reply.only('privately').map((p) => p.text)).toEqual([MESSAGES.withheldImage(2)]);
    }
    expect(jobs.submitted.length).toBe(before);
    for (const control of [
      { action: 'vary', index: 0, strength: 'subtle' },
      { action: 'upscale2x', index: 2 },
      { action: 'refine', index: 1 },
    ] as const) {
      const reply = new RecordingReply();
      await service.press(press({ ...control, recordId: id }, { user: `u-${control.action}` }), reply);
      expect(reply.only('queued')).toHaveLength(1);
    }
  });

  it('OWNER_ONLY_BUTTONS covers Vary and Upscale ×2 too', async () => {
    await service.close();
    service = new ConversationService({
      jobs,
      settings: { ...SETTINGS, ownerOnlyButtons: true },
      random: () => 0.25,
      log: SILENT,
    });
    service.attach(new RecordingSurface());
    await service.imagine(command(), new RecordingReply());
    const id = await finishedGrid(jobs);
    for (const control of [
      { action: 'vary', index: 2, strength: 'strong' },
      { action: 'upscale2x', index: 2 },
    ] as const) {
      const other = new RecordingReply();
      await service.press(press({ ...control, recordId: id }, { user: 'u2' }), other);
      expect(other.only('privately').map((p) => p.text)).toEqual([MESSAGES.notOwner]);
      const owner = new RecordingReply();
      await service.press(press({ ...control, recordId: id }), owner);
      expect(owner.only('queued')).toHaveLength(1);
    }
  });

  it('allows Vary of a flagged image where the policy blurs (the variations are blurred in turn)', async () => {
    await service.close();
    service = new ConversationService({
      jobs,
      settings: { ...SETTINGS, nsfwPolicy: 'blur' },
      random: () => 0.25,
      log: SILENT,
    });
    service.attach(new RecordingSurface());
    await service.imagine(command(), new RecordingReply());
    const id = await finishedGrid(jobs, [false, true, false, false]);
    const reply = new RecordingReply();
    await service.press(press({ action: 'vary', index: 1, strength: 'subtle', recordId: id }), reply);
    expect(reply.only('queued')).toHaveLength(1);
  });
});

describe('the new buttons and the daily quota (real Redis store and quota)', () => {
  const redis = useTestRedis();
  let jobs: FakeJobs;
  let service: ConversationService;
  let store: TeamSettingsStore;
  let quota: DailyQuota;
  const now = Date.UTC(2026, 11, 3, 12);

  beforeEach(async () => {
    ({ store, quota } = await startTeamSupport(redis.url, uniquePrefix('press-quota'), SETTINGS));
    jobs = new FakeJobs();
    service = new ConversationService({ jobs, settings: SETTINGS, teams: { store, quota }, now: () => now });
    service.attach(new RecordingSurface());
  });
  afterEach(async () => {
    await service.close();
    await store.close();
    await quota.close();
  });

  it('a Vary takes four images of the quota and an Upscale ×2 one', async () => {
    // A quota of N allows a request while fewer than N images were made today (bots/settings/quota.ts).
    await store.update(
      { surface: 'discord', workspace: 'g1' },
      { dailyQuota: 6 },
      { surface: 'discord', user: 'boss' },
    );
    await service.imagine(command(), new RecordingReply());
    const id = await finishedGrid(jobs);
    const pressAs = async (user: string, control: Omit<DecodedControl, 'recordId'>) => {
      const reply = new RecordingReply();
      await service.press(press({ ...control, recordId: id }, { user }), reply);
      return reply.only('queued').length === 1 ? 'queued' : reply.only('privately')[0]?.text;
    };
    // u1: 4 (the grid) + 4 (Vary) = 8 ≥ 6, so even one more image is refused.
    expect(await pressAs('u1', { action: 'vary', index: 0, strength: 'subtle' })).toBe('queued');
    expect(await pressAs('u1', { action: 'upscale2x', index: 0 })).toMatch(
      /used your 6 images for today here/u,
    );
    // u2: six Upscale ×2 presses are six images; the seventh is refused.
    for (let i = 0; i < 6; i++) {
      expect(await pressAs('u2', { action: 'upscale2x', index: i % 4 })).toBe('queued');
      // Finished, so the per-user cap of unfinished jobs doesn't get in the way.
      await jobs.complete(jobs.submitted.at(-1)!, { grid: await tile(1), images: [await tile(1)] });
    }
    expect(await pressAs('u2', { action: 'upscale2x', index: 0 })).toMatch(/used your 6 images/u);
  });
});
