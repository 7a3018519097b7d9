import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConversationService, encodeControl, type ServiceSettings } from '../../bots/service.ts';
import type { DailyQuota } from '../../bots/settings/quota.ts';
import type { TeamSettingsStore } from '../../bots/settings/store.ts';
import type { ImagineCommand } from '../../bots/surface.ts';
import { utcDay } from '../../core/team-settings.ts';
import { queueFullError } from '../../queue/index.ts';
import { startTeamSupport } from '../helpers/teams.ts';
import { uniquePrefix, useTestRedis } from '../helpers/use-redis.ts';
import { FakeJobs } from './fake-jobs.ts';
import { RecordingReply, RecordingSurface } from './recording-surface.ts';
import { SERVICE_SETTINGS } from './service-settings.ts';

const SETTINGS: ServiceSettings = { ...SERVICE_SETTINGS, bannedWords: ['globalword'] };

function command(over: Partial<ImagineCommand> = {}): ImagineCommand {
  return {
    surface: 'discord',
    user: 'u1',
    workspace: 'g1',
    channel: 'c1',
    interactionId: `i-${Math.random()}`,
    text: 'a boat',
    ...over,
  } as ImagineCommand;
}

/** The service with a real settings store and quota on Redis; the queue is FakeJobs. */
describe('ConversationService with team settings (real Redis store and quota)', () => {
  const redis = useTestRedis();
  let jobs: FakeJobs;
  let service: ConversationService;
  let store: TeamSettingsStore;
  let quota: DailyQuota;
  const admin = { surface: 'discord', user: 'boss' } as const;
  const workspace = { surface: 'discord', workspace: 'g1' } as const;
  const channel = { ...workspace, channel: 'c1' } as const;
  const now = Date.UTC(2026, 11, 3, 12);

  beforeEach(async () => {
    ({ store, quota } = await startTeamSupport(redis.url, uniquePrefix('svc-team'), SETTINGS));
    jobs = new FakeJobs();
    service = new ConversationService({ jobs, settings: SETTINGS, teams: { store, quota }, now: () => now });
    service.attach(new RecordingSurface());
  });
  afterEach(async () => {
    await service.close();
    await store.close();
    await quota.close();
  });

  const used = async (user: string) =>
    Number((await redis.admin.get(quota.keyOf(workspace, user, utcDay(now).day))) ?? 0);

  it('gives the images back when the queue refuses the job, and counts a redelivered interaction once', async () => {
    await store.update(workspace, { dailyQuota: 4 }, admin);
    jobs.submitError = queueFullError(200, 200, 10, { id: 'discord-x' });
    const refused = new RecordingReply();
    await service.imagine(command(), refused);
    expect(refused.only('privately')[0]?.text).toContain('queue');
    expect(await used('u1')).toBe(0);

    const first = command({ interactionId: 'same' });
    await service.imagine(first, new RecordingReply());
    await service.imagine(first, new RecordingReply());
    expect(jobs.submitted).toHaveLength(1);
    expect(await used('u1')).toBe(4);

    const over = new RecordingReply();
    await service.imagine(command(), over);
    expect(over.only('privately')[0]?.text).toMatch(/used your 4 images for today here/u);
  });

  it("applies a workspace's settings only in that workspace, and the environment's banned words everywhere", async () => {
    await store.update(workspace, { bannedWords: ['kraken'], steps: 9 }, admin);
    const refused = new RecordingReply();
    await service.imagine(command({ text: 'a Kraken' }), refused);
    expect(refused.only('privately')[0]?.text).toContain('not allowed here');

    const elsewhere = new RecordingReply();
    await service.imagine(command({ workspace: 'g2', text: 'a kraken' }), elsewhere);
    expect(elsewhere.only('queued')).toHaveLength(1);
    expect(jobs.records.get(jobs.submitted[0]!)?.spec.steps).toBe(25);

    const global = new RecordingReply();
    await service.imagine(command({ workspace: 'g2', text: 'a GlobalWord' }), global);
    expect(global.only('privately')[0]?.text).toContain('not allowed here');

    await service.imagine(command({ text: 'a boat' }), new RecordingReply());
    expect(jobs.records.get(jobs.submitted[1]!)?.spec.steps).toBe(9);
  });

  it("lets a channel's listed admins cancel anyone's job there, and only there", async () => {
    await store.update(channel, { admins: ['discord:helper'] }, admin);
    await service.imagine(command({ interactionId: 'a', channel: 'c2' }), new RecordingReply());
    await service.imagine(command({ interactionId: 'b' }), new RecordingReply());
    const [other, here] = jobs.submitted as [string, string];
    const cancel = (recordId: string, channelId: string) => {
      const reply = new RecordingReply();
      return service
        .press(
          {
            surface: 'discord',
            user: 'helper',
            workspace: 'g1',
            channel: channelId,
            interactionId: `p-${Math.random()}`,
            controlId: encodeControl({ action: 'cancel', recordId, index: 0 }),
          },
          reply,
        )
        .then(() => reply);
    };
    expect((await cancel(other, 'c2')).only('privately')[0]?.text).toContain('Only the person who asked');
    expect((await cancel(here, 'c1')).only('privately')).toHaveLength(0);
    expect(jobs.records.get(here)?.state.status.state).toBe('cancelled');
  });
});
