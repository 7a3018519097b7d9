import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { globalSettingsOf } from '../../bots/service/team.ts';
import { DailyQuota } from '../../bots/settings/quota.ts';
import { TeamSettingsStore } from '../../bots/settings/store.ts';
import { FAKE_TEAM_ID, FakeSlack } from '../fakes/slack/index.ts';
import { startTestRedis, type TestRedis, uniquePrefix } from '../helpers/redis.ts';
import { TEST_SETTINGS, TestBot } from './slack-harness.ts';

/**
 * Slack `/imagine-settings` end to end: the real bolt app in HTTP mode, signed requests from the
 * fake Slack's sender, the modal opened through views.open, its submission (view_submission)
 * answered in bolt's ack, users.info for roles, settings in a real Redis.
 */
const fake = new FakeSlack();
let redis: TestRedis;
let bot: TestBot;
let store: TeamSettingsStore;
let quota: DailyQuota;

const ADMIN = 'U0ALICE';
const MEMBER = 'U0BOB';
const CHANNEL = 'C0GENERAL';
const channelScope = { surface: 'slack', workspace: FAKE_TEAM_ID, channel: CHANNEL } as const;

beforeAll(async () => {
  [redis] = await Promise.all([startTestRedis(), fake.start()]);
  fake.addChannel({ id: CHANNEL, name: 'general' });
  fake.users.set(ADMIN, { isAdmin: true });
  fake.users.set(MEMBER, {});
  const prefix = uniquePrefix('sset');
  store = new TeamSettingsStore({
    connection: redis.url,
    prefix,
    global: globalSettingsOf(TEST_SETTINGS),
    log: { debug() {}, info() {}, warn() {}, error() {} },
  });
  await store.start();
  quota = new DailyQuota({ connection: redis.url, prefix });
  bot = await TestBot.start({ redisUrl: redis.url, prefix, fake, teams: { store, quota } });
});

afterAll(async () => {
  await bot?.stop();
  await store?.close();
  await quota?.close();
  await fake.stop();
  await redis?.stop();
});

/** The next ephemeral message to a user (from a response_url or chat.postEphemeral). */
function nextEphemeral(user: string) {
  const seen = fake.ephemerals.length;
  return () =>
    fake.waitFor(
      () => fake.ephemerals.slice(seen).find((e) => e.user === user || e.user === undefined),
      10_000,
      `an ephemeral message to ${user}`,
    );
}

/** Sends `/imagine-settings` and waits for the modal it opens. */
async function openModal(user: string, text = '') {
  const before = fake.views.length;
  const res = await bot.sender.slashCommand({ command: '/imagine-settings', text, user, channel: CHANNEL });
  expect(res.status).toBe(200);
  return fake.waitFor(() => fake.views[before], 10_000, 'the settings modal');
}

type Modal = Awaited<ReturnType<typeof openModal>>;

function initialValues(view: Modal): Record<string, string | undefined> {
  const blocks = view.blocks as { type: string; block_id?: string; element?: { initial_value?: string } }[];
  return Object.fromEntries(
    blocks.filter((b) => b.type === 'input').map((b) => [b.block_id, b.element?.initial_value]),
  );
}

describe('Slack /imagine-settings (bolt over HTTP against the fake Slack, real Redis)', () => {
  it('tells a member who is not an admin, privately, and opens no modal', async () => {
    const refusal = nextEphemeral(MEMBER);
    const res = await bot.sender.slashCommand({
      command: '/imagine-settings',
      text: '',
      user: MEMBER,
      channel: CHANNEL,
    });
    expect(res.status).toBe(200);
    expect((await refusal()).text).toContain('needs a workspace admin or owner');
    expect(fake.views).toHaveLength(0);
    expect(fake.okCallsTo('users.info').map((c) => c.params.user)).toContain(MEMBER);
  });

  it('opens a modal for a workspace admin with one input per setting', async () => {
    const view = await openModal(ADMIN);
    expect(view.callback_id).toBe('imagine_settings');
    expect(JSON.parse(String(view.private_metadata))).toEqual({
      scope: 'channel',
      workspace: FAKE_TEAM_ID,
      channel: CHANNEL,
    });
    expect(Object.keys(initialValues(view))).toEqual([
      'suffixes',
      'negative',
      'sampler',
      'steps',
      'guidance',
      'aspect',
      'model',
      'ownerOnlyButtons',
      'bannedWords',
      'dailyQuota',
      'admins',
      'nsfw',
    ]);
  });

  it('saves what the admin submits, and /imagine in the channel then refuses a banned word', async () => {
    const view = await openModal(ADMIN);
    const res = await bot.sender.submitView({
      view,
      user: ADMIN,
      values: { suffixes: ', x\n, y', bannedWords: 'dragon, kraken', steps: '6' },
    });
    expect(res.status).toBe(200);
    expect(res.body).toBe('');
    expect(await store.overrides(channelScope)).toEqual({
      suffixes: [', x', ', y'],
      bannedWords: ['dragon', 'kraken'],
      steps: 6,
    });
    const refusal = nextEphemeral(MEMBER);
    await bot.sender.slashCommand({ text: 'a red Dragon', user: MEMBER, channel: CHANNEL });
    const text = (await refusal()).text;
    expect(text).toContain('not allowed here');
    expect(text.toLowerCase()).not.toContain('dragon');
  });

  it('shows a bad value under its input and saves nothing', async () => {
    const view = await openModal(ADMIN);
    const res = await bot.sender.submitView({
      view,
      user: ADMIN,
      values: { steps: 'lots', suffixes: ', z' },
    });
    expect(res.status).toBe(200);
    const body = JSON.parse(res.body) as { response_action: string; errors: Record<string, string> };
    expect(body.response_action).toBe('errors');
    expect(body.errors.steps).toContain('Setting "steps" must be');
    expect((await store.overrides(channelScope)).suffixes).toEqual([', x', ', y']);
  });

  it('refuses a submission from someone who may not change settings', async () => {
    const view = await openModal(ADMIN);
    const res = await bot.sender.submitView({ view, user: MEMBER, values: { steps: '9' } });
    const body = JSON.parse(res.body) as { response_action: string; errors: Record<string, string> };
    expect(body.response_action).toBe('errors');
    expect(Object.values(body.errors).join(' ')).toContain('workspace admin or owner');
    expect((await store.overrides(channelScope)).steps).toBe(6);
  });

  it('lets someone an admin listed change settings, prefilled with what is set', async () => {
    const view = await openModal(ADMIN);
    await bot.sender.submitView({
      view,
      user: ADMIN,
      values: { suffixes: ', x\n, y', bannedWords: 'dragon\nkraken', steps: '6', admins: MEMBER },
    });
    expect((await store.overrides(channelScope)).admins).toEqual([`slack:${MEMBER}`]);
    const theirs = await openModal(MEMBER);
    expect(initialValues(theirs)).toMatchObject({
      suffixes: ', x\n, y',
      bannedWords: 'dragon\nkraken',
      steps: '6',
      admins: MEMBER,
      negative: undefined,
    });
  });

  it('/imagine-settings workspace edits the workspace scope (an admin only)', async () => {
    const view = await openModal(ADMIN, 'workspace');
    expect(JSON.parse(String(view.private_metadata)).scope).toBe('workspace');
    await bot.sender.submitView({ view, user: ADMIN, values: { dailyQuota: '8' } });
    expect(await store.overrides({ surface: 'slack', workspace: FAKE_TEAM_ID })).toEqual({ dailyQuota: 8 });
    // Listed for the channel is not enough for the workspace.
    const refusal = nextEphemeral(MEMBER);
    await bot.sender.slashCommand({
      command: '/imagine-settings',
      text: 'workspace',
      user: MEMBER,
      channel: CHANNEL,
    });
    expect((await refusal()).text).toContain("can't change the bot's workspace settings");
  });
  it('has an NSFW field: an admin may set allow explicitly (Slack has no age-restricted channels); a bad value shows under it', async () => {
    const view = await openModal(ADMIN);
    expect(Object.keys(initialValues(view))).toContain('nsfw');
    const bad = await bot.sender.submitView({ view, user: ADMIN, values: { nsfw: 'maybe' } });
    const body = JSON.parse(bad.body) as { response_action: string; errors: Record<string, string> };
    expect(body.response_action).toBe('errors');
    expect(body.errors.nsfw).toBe('Setting "nsfw" must be one of block, blur, allow.');
    const res = await bot.sender.submitView({ view, user: ADMIN, values: { nsfw: 'allow' } });
    expect(res.status).toBe(200);
    expect(res.body).toBe('');
    expect((await store.overrides(channelScope)).nsfw).toBe('allow');
    expect(initialValues(await openModal(ADMIN)).nsfw).toBe('allow');
  });
});
