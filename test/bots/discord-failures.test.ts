import { type APIMessage, RESTJSONErrorCodes } from 'discord.js';
import sharp from 'sharp';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { MESSAGES } from '../../bots/service.ts';
import { liveMarkdown, shownContent } from '../fakes/discord/payloads.ts';
import { buttonsOf, FakeDiscord, type RecordedRequest } from '../fakes/discord/server.ts';
import { startTestRedis, type TestRedis } from '../helpers/redis.ts';
import {
  ALICE,
  BOB,
  type GatedEngine,
  type Harness,
  loadTinyEngine,
  poll,
  startHarness,
} from './discord-harness.ts';

function gridOf(message: APIMessage | undefined): APIMessage | undefined {
  return message !== undefined && message.attachments.length === 1 && buttonsOf(message).length === 3
    ? message
    : undefined;
}

function button(message: APIMessage, label: string): string {
  const found = buttonsOf(message)
    .flat()
    .find((b) => b.label === label);
  if (found === undefined) throw new Error(`no button ${label}`);
  return found.customId;
}

const carriesGrid = (r: RecordedRequest) => r.files.some((f) => f.name.endsWith('-grid.png'));

describe('Discord failure paths (real discord.js, real queue)', () => {
  let redis: TestRedis;
  let engine: GatedEngine;
  let h: Harness | undefined;

  beforeAll(async () => {
    redis = await startTestRedis();
    engine = await loadTinyEngine();
  });
  afterEach(async () => {
    engine.release();
    await h?.close();
    h = undefined;
  });
  afterAll(async () => {
    await engine?.inner.close();
    await redis?.stop();
  });

  it('bad input gets an ephemeral answer that says what is allowed, and nothing is queued', async () => {
    h = await startHarness({ redisUrl: redis.url, engine });
    const { fake } = h;
    const calls = engine.calls;
    const bad = fake.slashCommand({ options: { prompt: 'a cat', size: '100x100' }, user: ALICE });
    const reply = await fake.waitFor(() => fake.originalMessage(bad), 5000, 'the reply');
    const callback = fake.find('POST', new RegExp(`^/interactions/${bad.id}/`))[0]!;
    expect(callback.body).toMatchObject({ type: 4, data: { flags: 64 | 4 } });
    expect(callback.receivedAt - bad.sentAt).toBeLessThan(3000);
    expect(reply.flags! & 64).toBe(64);
    expect(shownContent(reply.content)).toMatch(/Width must be a multiple of 8, got 100 \(try 96 or 104\)/);
    const tooBig = fake.slashCommand({ options: { prompt: 'a cat', size: '1024x1024' }, user: ALICE });
    const reply2 = await fake.waitFor(() => fake.originalMessage(tooBig), 5000, 'the reply');
    expect(shownContent(reply2.content)).toMatch(/the limit is 16384/);
    await new Promise((r) => setTimeout(r, 200));
    expect(await h.jobs.record(`discord-${bad.id}`)).toBeNull();
    expect(await h.jobs.record(`discord-${tooBig.id}`)).toBeNull();
    expect(engine.calls).toBe(calls);
  });

  it('an error quoting hostile input shows it literally: no link, formatting or ping', async () => {
    h = await startHarness({ redisUrl: redis.url, engine });
    const { fake } = h;
    const hostile = '[Download](https://evil.example) **b** @everyone <@222222222222222222> <@&333>';
    const bad = fake.slashCommand({ options: { prompt: 'a cat', size: hostile }, user: ALICE });
    const reply = await fake.waitFor(() => fake.originalMessage(bad), 5000, 'the reply');
    const callback = fake.find('POST', new RegExp(`^/interactions/${bad.id}/`))[0]!;
    const data = (callback.body as { data: { content: string; allowed_mentions: unknown; flags: number } })
      .data;
    expect(data.allowed_mentions).toEqual({ parse: [] });
    expect(data.flags).toBe(64 | 4); // private, no link preview
    // The message names the bad value exactly as typed, and none of it is live markdown.
    expect(shownContent(reply.content)).toContain(`got \`${hostile}\``);
    expect(liveMarkdown(reply.content)).not.toMatch(/\]\(|https?:|\*\*|@everyone|<@|`/u);
  });

  it('the same interaction delivered twice makes one job and one grid', async () => {
    h = await startHarness({ redisUrl: redis.url, engine });
    const { fake } = h;
    const calls = engine.calls;
    const first = fake.slashCommand({ options: { prompt: 'a twin', seed: 5 }, user: ALICE });
    fake.slashCommand({ options: { prompt: 'a twin', seed: 5 }, user: ALICE, replay: first });
    const grid = await fake.waitFor(() => gridOf(fake.originalMessage(first)), 30_000, 'the grid');
    await new Promise((r) => setTimeout(r, 500));
    const callbacks = fake.find('POST', new RegExp(`^/interactions/${first.id}/`));
    expect(callbacks.map((c) => c.status).sort()).toEqual([204, 400]); // the replay: "already acknowledged"
    expect(engine.calls).toBe(calls + 1);
    expect(fake.find('PATCH', /messages\/(@original|\d+)$/).filter(carriesGrid)).toHaveLength(1);
    expect(fake.messagesOf(first)).toEqual([grid]);
  });

  it('buttons keep working after the bot restarts (new client, new service, same Redis)', async () => {
    h = await startHarness({ redisUrl: redis.url, engine });
    const command = h.fake.slashCommand({ options: { prompt: 'a restart', seed: 77 }, user: ALICE });
    const grid = await h.fake.waitFor(() => gridOf(h!.fake.originalMessage(command)), 30_000, 'the grid');
    const identifies = h.fake.identifyCount;
    await h.restartBot();
    expect(h.fake.identifyCount).toBe(identifies + 1);
    expect(h.fake.readySessions).toBe(1);
    const press = h.fake.pressButton({ messageId: grid.id, customId: button(grid, '1'), user: BOB });
    const refined = await h.fake.waitFor(
      () => gridOf(h!.fake.messagesOf(press)[0]),
      30_000,
      'the refined grid',
    );
    expect(refined.content).toContain('refining image 1');
    expect((await h.jobs.record(`discord-${press.id}`))?.spec.seeds).toEqual([77, 77, 77, 77]);
  });

  it('a 429 then 200 on the grid post: discord.js waits retry-after, and the grid is posted once', async () => {
    h = await startHarness({ redisUrl: redis.url, engine });
    const { fake } = h;
    fake.injectFault({
      method: 'PATCH',
      path: /\/messages\/(@original|\d+)$/,
      status: 429,
      retryAfter: 0.4,
      match: carriesGrid,
    });
    const command = fake.slashCommand({ options: { prompt: 'rate limited' }, user: ALICE });
    const grid = await fake.waitFor(() => gridOf(fake.originalMessage(command)), 30_000, 'the grid');
    await new Promise((r) => setTimeout(r, 500));
    const posts = fake.requests.filter(carriesGrid);
    expect(posts.map((p) => p.status)).toEqual([429, 200]);
    expect(posts[1]!.receivedAt - posts[0]!.receivedAt).toBeGreaterThanOrEqual(400);
    expect(fake.find('POST', /^\/channels\//)).toHaveLength(0);
    expect(grid.attachments).toHaveLength(1);
  });

  it('a chat API that keeps failing (5xx) fails the delivery, which is retried and posts once', async () => {
    h = await startHarness({ redisUrl: redis.url, engine });
    const { fake } = h;
    // discord.js retries a 5xx 3 times itself; the 4th failure reaches the delivery queue.
    fake.injectFault({
      method: 'PATCH',
      path: /\/messages\/(@original|\d+)$/,
      status: 502,
      times: 4,
      match: carriesGrid,
    });
    const command = fake.slashCommand({ options: { prompt: 'flaky api' }, user: ALICE });
    await fake.waitFor(() => gridOf(fake.originalMessage(command)), 30_000, 'the grid');
    await new Promise((r) => setTimeout(r, 500));
    expect(fake.requests.filter(carriesGrid).map((p) => p.status)).toEqual([502, 502, 502, 502, 200]);
  });

  it('tampered or unknown custom_ids get an ephemeral error and queue nothing', async () => {
    h = await startHarness({ redisUrl: redis.url, engine });
    const { fake } = h;
    const command = fake.slashCommand({ options: { prompt: 'a target' }, user: ALICE });
    const grid = await fake.waitFor(() => gridOf(fake.originalMessage(command)), 30_000, 'the grid');
    const calls = engine.calls;
    const forged = fake.pressButton({
      messageId: grid.id,
      customId: 'refine:discord-x:9',
      user: BOB,
      forge: true,
    });
    const answer = await fake.waitFor(() => fake.originalMessage(forged) ?? undefined, 5000, 'the answer');
    // An invalid id is refused in the acknowledgement itself (no Redis involved).
    const refusal = fake.find('POST', new RegExp(`^/interactions/${forged.id}/`))[0]?.body as {
      type: number;
      data: { flags: number; content: string };
    };
    expect(refusal).toMatchObject({ type: 4, data: { flags: 64 | 4 } });
    expect(shownContent(refusal.data.content)).toBe(MESSAGES.invalidControl);
    expect(answer.id).not.toBe(grid.id);
    // A well-formed id of a grid that does not exist (or expired): the expired message, privately.
    const unknown = fake.pressButton({
      messageId: grid.id,
      customId: 'upscale:discord-1234567890123456789:2',
      user: BOB,
      forge: true,
    });
    const expired = await fake.waitFor(
      () => fake.messagesOf(unknown).find((m) => (m.flags ?? 0) & 64),
      5000,
      'the expired answer',
    );
    expect(shownContent(expired.content)).toMatch(/^This grid has expired/);
    expect(fake.messages.get(grid.id)?.content).toBe(grid.content);
    await new Promise((r) => setTimeout(r, 200));
    expect(engine.calls).toBe(calls);
  });

  it('after the interaction token expires, the result is posted as a channel message', async () => {
    const fake = await FakeDiscord.start({ token: 'fake-bot-token', tokenTtlMs: 800 });
    try {
      h = await startHarness({ redisUrl: redis.url, engine, fake });
      engine.hold();
      const command = fake.slashCommand({ options: { prompt: 'hold: a slow one' }, user: ALICE });
      const jobId = `discord-${command.id}`;
      await poll(async () => (await h!.jobs.status(jobId))?.state === 'running', 10_000);
      await new Promise((r) => setTimeout(r, 900));
      engine.release();
      const posted = await fake.waitFor(
        () =>
          [...fake.messages.values()].find((m) => m.webhook_id === undefined && m.attachments.length === 1),
        30_000,
        'the channel message',
      );
      expect(posted.channel_id).toBe(fake.channelId);
      expect(posted.content).toContain(`<@${ALICE.id}>`);
      expect(
        buttonsOf(posted)
          .flat()
          .map((b) => b.label),
      ).toContain('U1');
      const original = fake.originalMessage(command)!;
      expect(posted.message_reference).toMatchObject({ message_id: original.id });
      expect(fake.find('PATCH', /messages\/@original$|messages\/\d+$/, 401).length).toBeGreaterThan(0);
      // Its buttons work like any others.
      const press = fake.pressButton({ messageId: posted.id, customId: button(posted, 'U2'), user: BOB });
      const full = await fake.waitFor(
        () => fake.messagesOf(press).find((m) => m.attachments.length === 1),
        10_000,
        'U2',
      );
      expect(full.content).toContain('Image 2');
    } finally {
      await h?.close();
      h = undefined;
      await fake.close();
    }
  });

  it.each([
    ['Unknown Message', 404, RESTJSONErrorCodes.UnknownMessage],
    ['Unknown Webhook', 404, RESTJSONErrorCodes.UnknownWebhook],
    ['Unknown Interaction', 404, RESTJSONErrorCodes.UnknownInteraction],
  ])('a webhook answering %s: the grid is posted in the channel instead', async (message, status, code) => {
    h = await startHarness({ redisUrl: redis.url, engine });
    const { fake } = h;
    fake.injectFault({
      method: 'PATCH',
      path: /\/messages\/(@original|\d+)$/,
      status,
      code,
      message,
      match: carriesGrid,
    });
    const command = fake.slashCommand({ options: { prompt: 'a vanished message' }, user: ALICE });
    const posted = await fake.waitFor(
      () => gridOf([...fake.messages.values()].find((m) => m.webhook_id === undefined)),
      30_000,
      'the channel message',
    );
    expect(posted.channel_id).toBe(fake.channelId);
    expect(posted.message_reference).toMatchObject({ message_id: fake.originalMessage(command)!.id });
    expect(fake.requests.filter(carriesGrid).map((r) => r.status)).toEqual([status, 200]);
  });

  it('a channel the bot lost access to stops the delivery at once instead of retrying', async () => {
    const fake = await FakeDiscord.start({ token: 'fake-bot-token', tokenTtlMs: 800 });
    try {
      h = await startHarness({ redisUrl: redis.url, engine, fake });
      fake.injectFault({
        method: 'POST',
        path: /\/channels\/\d+\/messages$/,
        status: 403,
        code: 50013,
        message: 'Missing Permissions',
        times: 100,
      });
      engine.hold();
      const command = fake.slashCommand({ options: { prompt: 'hold: into a locked channel' }, user: ALICE });
      const jobId = `discord-${command.id}`;
      await poll(async () => (await h!.jobs.status(jobId))?.state === 'running', 10_000);
      await new Promise((r) => setTimeout(r, 900));
      engine.release();
      await poll(async () => fake.find('POST', /\/channels\/\d+\/messages$/, 403).length > 0, 20_000);
      // Delivery backoff is short in the harness: a retried delivery would have posted again by now.
      await new Promise((r) => setTimeout(r, 2000));
      expect(fake.find('POST', /\/channels\/\d+\/messages$/).length).toBe(1);
    } finally {
      await h?.close();
      h = undefined;
      await fake.close();
    }
  });

  it('registers the command per guild when a guild id is given', async () => {
    const fake = await FakeDiscord.start({ token: 'fake-bot-token' });
    try {
      h = await startHarness({ redisUrl: redis.url, engine, fake, bot: { guildId: fake.guildId } });
      expect(fake.globalCommands).toEqual([]);
      expect(fake.guildCommands.get(fake.guildId)?.map((c) => c.name)).toEqual(['imagine']);
      expect(
        fake.find('PUT', new RegExp(`^/applications/${fake.appId}/guilds/${fake.guildId}/commands$`), 200),
      ).toHaveLength(1);
    } finally {
      await h?.close();
      h = undefined;
      await fake.close();
    }
  });

  it('a grid over the upload limit is sent as WebP (or JPEG) under it', async () => {
    const limit = 120_000;
    const fake = await FakeDiscord.start({ token: 'fake-bot-token', maxUploadBytes: limit });
    try {
      h = await startHarness({ redisUrl: redis.url, engine, fake, bot: { maxUploadBytes: limit } });
      const command = fake.slashCommand({ options: { prompt: 'a big grid', size: '128x128' }, user: ALICE });
      const grid = await fake.waitFor(() => gridOf(fake.originalMessage(command)), 30_000, 'the grid');
      const png = await h.jobs.gridPng(`discord-${command.id}`);
      expect(png!.length).toBeGreaterThan(limit); // the premise: the PNG would not fit
      const attachment = grid.attachments[0]!;
      expect(['image/webp', 'image/jpeg']).toContain(attachment.content_type);
      expect(attachment.size).toBeLessThanOrEqual(limit);
      const meta = await sharp(fake.attachmentData(attachment)).metadata();
      expect([meta.width, meta.height]).toEqual([256, 256]);
    } finally {
      await h?.close();
      h = undefined;
      await fake.close();
    }
  });

  it('owner-only buttons refuse other users privately', async () => {
    h = await startHarness({ redisUrl: redis.url, engine, settings: { ownerOnlyButtons: true } });
    const { fake } = h;
    const command = fake.slashCommand({ options: { prompt: 'mine only' }, user: ALICE });
    const grid = await fake.waitFor(() => gridOf(fake.originalMessage(command)), 30_000, 'the grid');
    const press = fake.pressButton({ messageId: grid.id, customId: button(grid, '3'), user: BOB });
    const refusal = await fake.waitFor(
      () => fake.messagesOf(press).find((m) => (m.flags ?? 0) & 64),
      5000,
      'the refusal',
    );
    expect(shownContent(refusal.content)).toBe(MESSAGES.notOwner);
    expect(await h.jobs.record(`discord-${press.id}`)).toBeNull();
  });
});
