import { type APIMessage, type APIRequest, RESTEvents } from 'discord.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeControl } from '../../bots/service.ts';
import { DEFAULT_SUFFIXES } from '../../core/config.ts';
import { liveMarkdown, shownContent } from '../fakes/discord/payloads.ts';
import { buttonsOf, type FakeDiscord, type InjectedInteraction } from '../fakes/discord/server.ts';
import { startTestRedis, type TestRedis } from '../helpers/redis.ts';
import {
  ALICE,
  BOB,
  button,
  type GatedEngine,
  gridTiles,
  type Harness,
  loadTinyEngine,
  meanAbsDiff,
  poll,
  startHarness,
} from './discord-harness.ts';

/** A grid message: one image attachment and the three button rows. */
function isGrid(message: APIMessage | undefined): APIMessage | undefined {
  if (message === undefined || message.attachments.length !== 1) return undefined;
  const labels = buttonsOf(message).map((row) => row.map((b) => b.label));
  return labels.length === 3 && labels[0]?.[0] === '1' ? message : undefined;
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** The callback POST of an interaction and how long after the dispatch it arrived. */
async function ackOf(fake: FakeDiscord, interaction: InjectedInteraction) {
  const request = await fake.waitFor(
    () => fake.find('POST', new RegExp(`^/interactions/${interaction.id}/`)).find((r) => r.status !== 0),
    5000,
    'the interaction callback',
  );
  return { request, ms: request.receivedAt - interaction.sentAt };
}

describe('Discord end to end (real discord.js, real queue, tiny-sd on onnxruntime)', () => {
  let redis: TestRedis;
  let engine: GatedEngine;
  let h: Harness;

  beforeAll(async () => {
    redis = await startTestRedis();
    engine = await loadTinyEngine();
    h = await startHarness({ redisUrl: redis.url, engine });
  });
  afterAll(async () => {
    engine?.release();
    await h?.close();
    await engine?.inner.close();
    await redis?.stop();
  });

  it('registers /imagine idempotently with typed options and choices', async () => {
    const commands = h.fake.globalCommands;
    expect(commands.map((c) => c.name)).toEqual(['imagine']);
    const options = commands[0]?.options ?? [];
    expect(options.map((o) => o.name)).toEqual([
      'prompt',
      'negative',
      'seed',
      'steps',
      'guidance',
      'sampler',
      'aspect',
      'size',
      'image',
      'strength',
    ]);
    const sampler = options.find((o) => o.name === 'sampler') as { choices?: { value: string }[] };
    expect(sampler.choices?.map((c) => c.value)).toContain('euler_a');
    const aspect = options.find((o) => o.name === 'aspect') as { choices?: { value: string }[] };
    expect(aspect.choices?.map((c) => c.value)).toContain('3:2');
    const id = commands[0]?.id;
    await h.restartBot();
    expect(h.fake.globalCommands).toHaveLength(1);
    expect(h.fake.globalCommands[0]?.id).toBe(id);
    expect(h.fake.find('PUT', /^\/applications\/\d+\/commands$/, 200)).toHaveLength(2);
  });

  it('the story: /imagine → grid; 2 refines; U3 full size; 🔄 rerolls', async () => {
    const { fake } = h;
    // 1. /imagine, acknowledged well within 3 s, then the grid with its buttons.
    const command = fake.slashCommand({
      options: { prompt: 'a lighthouse at dusk', seed: 1000, negative: 'fog' },
      user: ALICE,
    });
    const ack = await ackOf(fake, command);
    expect(ack.request.body).toMatchObject({ type: 5 });
    expect(ack.request.status).toBe(204);
    expect(ack.ms).toBeLessThan(3000);
    const queuedEdit = await fake.waitFor(
      () =>
        fake
          .find('PATCH', new RegExp(`/webhooks/${fake.appId}/[^/]+/messages/@original$`), 200)
          .find((r) => (r.body as { content?: string }).content?.includes('Queued')),
      10_000,
      'the queued edit',
    );
    expect((queuedEdit.body as { content: string }).content).toMatch(/`1000` `1001` `1002` `1003`/);
    const grid = await fake.waitFor(() => isGrid(fake.originalMessage(command)), 30_000, 'the grid');
    expect(grid.content).toContain('a lighthouse at dusk');
    expect(grid.content).toContain('<@111111111111111111>');
    expect(grid.content).toMatch(/1: `1000` · 2: `1001` · 3: `1002` · 4: `1003`/);
    expect(grid.content).toContain('pndm · 4 steps · cfg 7.5 · 64×64 · negative: fog');
    expect(buttonsOf(grid).map((row) => row.map((b) => b.label))).toEqual([
      ['1', '2', '3', '4', '🔄'],
      ['U1', 'U2', 'U3', 'U4'],
      ['V1', 'V2', 'V3', 'V4'],
    ]);
    const recordId = `discord-${command.id}`;
    for (const b of buttonsOf(grid).flat()) {
      expect(b.customId.length).toBeLessThanOrEqual(100);
      expect(decodeControl(b.customId)?.recordId).toBe(recordId);
    }
    const gridPng = fake.attachmentData(grid.attachments[0]!);
    expect(grid.attachments[0]?.content_type).toBe('image/png');
    expect(gridPng.equals((await h.jobs.gridPng(recordId))!)).toBe(true);

    // 2. Press 2: a new grid, four images on seed 1001 with the four suffixes.
    const press = fake.pressButton({ messageId: grid.id, customId: button(grid, '2'), user: BOB });
    expect((await ackOf(fake, press)).request.body).toMatchObject({ type: 6 });
    const refined = await fake.waitFor(() => isGrid(fake.messagesOf(press)[0]), 30_000, 'the refined grid');
    expect(fake.messages.get(grid.id)?.attachments).toEqual(grid.attachments); // the parent is untouched
    const record = await h.jobs.record(`discord-${press.id}`);
    expect(record?.spec.kind).toBe('refine');
    expect(record?.spec.parent).toEqual({ gridId: recordId, index: 1 });
    expect(record?.spec.seeds).toEqual([1001, 1001, 1001, 1001]);
    expect(record?.spec.prompts).toEqual(DEFAULT_SUFFIXES.map((s) => `a lighthouse at dusk${s}`));
    expect(record?.spec.origin.user).toBe(BOB.id);
    expect(refined.content).toContain('refining image 2');
    // Each new tile is closer to old tile 2 than to the other old tiles; the suffix still changed it.
    const before = await gridTiles(gridPng);
    const after = await gridTiles(fake.attachmentData(refined.attachments[0]!));
    for (const tile of after.tiles) {
      const distances = before.tiles.map((old) => meanAbsDiff(tile, old));
      const nearest = distances.indexOf(Math.min(...distances));
      expect(nearest, `distances ${distances.map((d) => d.toFixed(2)).join(' ')}`).toBe(1);
      expect(distances[1]).toBeGreaterThan(0);
      expect(distances[1]! * 5).toBeLessThan(Math.min(distances[0]!, distances[2]!, distances[3]!));
    }

    // 3. U3: image 3 at full size, as its own message.
    const upscale = fake.pressButton({ messageId: grid.id, customId: button(grid, 'U3'), user: BOB });
    const full = await fake.waitFor(
      () => fake.messagesOf(upscale).find((m) => m.attachments.length === 1),
      15_000,
      'the full-size image',
    );
    expect((full.flags ?? 0) & 64).toBe(0); // public
    expect(full.content).toContain('Image 3');
    expect(full.content).toContain('1002');
    const fullPng = fake.attachmentData(full.attachments[0]!);
    expect(fullPng.equals((await h.jobs.imagePng(recordId, 2))!)).toBe(true);
    const [tile3] = (await gridTiles(gridPng)).tiles.slice(2, 3);
    const { data } = await (await import('sharp'))
      .default(fullPng)
      .removeAlpha()
      .raw()
      .toBuffer({ resolveWithObject: true });
    expect(meanAbsDiff(data, tile3!)).toBe(0);

    // 4. 🔄: same prompt, four new consecutive seeds.
    const reroll = fake.pressButton({ messageId: grid.id, customId: button(grid, '🔄'), user: ALICE });
    const rerolled = await fake.waitFor(
      () => isGrid(fake.messagesOf(reroll)[0]),
      30_000,
      'the rerolled grid',
    );
    const rerollRecord = await h.jobs.record(`discord-${reroll.id}`);
    expect(rerollRecord?.spec.kind).toBe('reroll');
    const seeds = rerollRecord?.spec.seeds ?? [];
    expect(seeds).toHaveLength(4);
    expect(seeds).not.toEqual([1000, 1001, 1002, 1003]);
    expect(seeds.map((s) => s - seeds[0]!)).toEqual([0, 1, 2, 3]);
    expect(rerollRecord?.spec.prompts).toEqual(Array(4).fill('a lighthouse at dusk'));
    expect(rerolled.content).toContain(String(seeds[0]));
  });

  it('a long prompt: the grid notes the 77-token cut, and the text stays within 2000 characters', async () => {
    const { fake } = h;
    const prompt = Array.from({ length: 120 }, (_, i) => `word${i}`).join(' ');
    const negative = 'n'.repeat(1000);
    const command = fake.slashCommand({ options: { prompt, negative }, user: ALICE });
    const grid = await fake.waitFor(() => isGrid(fake.originalMessage(command)), 30_000, 'the grid');
    const record = await h.jobs.record(`discord-${command.id}`);
    expect(record?.result?.truncatedTokens?.[0]).toBeGreaterThan(0);
    expect(grid.content.length).toBeLessThanOrEqual(2000);
    expect(grid.content).toMatch(
      new RegExp(
        `cut at the model's 77-token limit; the last ${record?.result?.truncatedTokens?.[0]} tokens were ignored`,
      ),
    );
    expect(grid.content).toContain('word0 word1');
    expect(grid.content).toContain('…');
  });

  it('shows a hostile prompt literally: no link, formatting, mention or ping reaches Discord', async () => {
    const { fake } = h;
    const prompt =
      '[Download full size](https://evil.example/x) **bold** __u__ ~~s~~ ||spoiler|| `code` # heading ' +
      '> quote -# small @everyone @here <@222222222222222222> <@&333> <#444> :skull: <t:1:R> https://evil.example';
    const command = fake.slashCommand({ options: { prompt, seed: 5 }, user: ALICE });
    const grid = await fake.waitFor(() => isGrid(fake.originalMessage(command)), 30_000, 'the grid');
    // Every message body the bot sent about it (queued, progress, grid), on any route.
    const sent = ['POST', 'PATCH']
      .flatMap((method) => fake.find(method, /./u, 200))
      .map((r) => r.body as { content?: string; allowed_mentions?: unknown; flags?: number })
      .filter((b) => b.content?.includes('evil') === true);
    expect(sent.length).toBeGreaterThanOrEqual(2); // queued, then the grid
    for (const body of [...sent, { content: grid.content, allowed_mentions: undefined }]) {
      const content = body.content!;
      // Discord shows the prompt exactly as typed…
      expect(shownContent(content)).toContain(prompt);
      // …and nothing in it is live markdown: no masked link, bare URL, mention, emoji, timestamp,
      // heading, subtext, quote, code, bold, underline, strikethrough or spoiler.
      // The only live markup is the bot's own: the prompt in bold, the requester's mention, seeds in code.
      const live = liveMarkdown(content);
      expect(live.match(/<@\d+>/gu)).toEqual([`<@${ALICE.id}>`]);
      expect(live.match(/\*\*/gu)).toHaveLength(2);
      expect(live.replace(/<@\d+>|`\d+`/gu, '')).not.toMatch(
        /\]\(|https?:|@(everyone|here)|<[@#t]|:skull|^#|-#|^>|`|\|\||~~|__/mu,
      );
    }
    for (const body of sent) {
      // Only the requester may be pinged, whatever the text says.
      const allowed = body.allowed_mentions as { parse: string[]; users: string[] };
      expect(allowed.parse).toEqual([]);
      expect(allowed.users.every((u) => u === ALICE.id)).toBe(true);
      // And no link preview, whatever Discord's unfurler finds.
      expect((body.flags ?? 0) & 4).toBe(4);
    }
    expect((grid.flags ?? 0) & 4).toBe(4);
  });

  it('every call on an interaction webhook, progress edits included, goes through the interaction REST client', async () => {
    const { fake } = h;
    // Paths each REST client of the bot got a response for, from discord.js's own events.
    const seen = { client: [] as string[], webhooks: [] as string[] };
    const onClient = (request: APIRequest) => seen.client.push(request.path);
    const onWebhooks = (request: APIRequest) => seen.webhooks.push(request.path);
    h.bot.client.rest.on(RESTEvents.Response, onClient);
    h.bot.webhooks.rest.on(RESTEvents.Response, onWebhooks);
    try {
      const command = fake.slashCommand({ options: { prompt: 'a slow sunrise', steps: 6 }, user: ALICE });
      const route = `/webhooks/${fake.appId}/${command.token}/`;
      // The grid is the job's last message; wait until the bot has its response too.
      const gridAnswered = new Promise<void>((resolve) => {
        h.bot.webhooks.rest.on(RESTEvents.Response, function onGrid(request) {
          const grid = `discord-${command.id}-grid.png`;
          if (request.data.files?.some((f) => f.name === grid) !== true) return;
          h.bot.webhooks.rest.off(RESTEvents.Response, onGrid);
          resolve();
        });
      });
      await fake.waitFor(() => isGrid(fake.originalMessage(command)), 30_000, 'the grid');
      await gridAnswered;
      // Every request the fake got on this interaction's webhook (the queued edit, progress edits, the grid)…
      const onWebhook = fake.requests.filter((r) => r.path.startsWith(route));
      const progress = onWebhook.filter(
        (r) =>
          !r.path.endsWith('/@original') &&
          (r.body as { content?: string }).content?.includes('Generating') === true,
      );
      expect(progress.length).toBeGreaterThanOrEqual(1);
      // …was sent by the interaction client…
      expect(seen.webhooks.filter((p) => p.startsWith(route)).length).toBe(onWebhook.length);
      // …while the bot's own client only acknowledged the interaction (its callback route).
      expect(seen.client.filter((p) => p.startsWith('/webhooks/'))).toEqual([]);
      expect(seen.client).toContain(`/interactions/${command.id}/${command.token}/callback`);
    } finally {
      h.bot.client.rest.off(RESTEvents.Response, onClient);
      h.bot.webhooks.rest.off(RESTEvents.Response, onWebhooks);
    }
  });

  it('cancels a queued job from its Cancel button; progress edits show percent and a preview', async () => {
    const { fake } = h;
    engine.hold();
    const busy = fake.slashCommand({ options: { prompt: 'hold the line, slow', steps: 6 }, user: ALICE });
    // Wait until the held job is running, so the next one stays queued.
    await poll(async () => (await h.jobs.status(`discord-${busy.id}`))?.state === 'running', 10_000);
    const queued = fake.slashCommand({ options: { prompt: 'a queued job' }, user: BOB });
    const queuedMessage = await fake.waitFor(
      () => {
        const m = fake.originalMessage(queued);
        return m?.content.includes('Queued') ? m : undefined;
      },
      10_000,
      'the queued message',
    );
    expect(queuedMessage.content).toMatch(/position 2 in the queue|next in line/);
    expect(
      buttonsOf(queuedMessage)
        .flat()
        .map((b) => b.label),
    ).toEqual(['Cancel']);
    // Another user may not cancel it.
    const stranger = fake.pressButton({
      messageId: queuedMessage.id,
      customId: button(queuedMessage, 'Cancel'),
      user: ALICE,
    });
    const refusal = await fake.waitFor(
      () => fake.messagesOf(stranger).find((m) => (m.flags ?? 0) & 64),
      10_000,
      'the ephemeral refusal',
    );
    expect(shownContent(refusal.content)).toMatch(/Only the person who asked for this job/);
    const cancel = fake.pressButton({
      messageId: queuedMessage.id,
      customId: button(queuedMessage, 'Cancel'),
      user: BOB,
    });
    await ackOf(fake, cancel);
    const cancelled = await fake.waitFor(
      () => {
        const m = fake.originalMessage(queued);
        return m?.content.includes('Cancelled') === true ? m : undefined;
      },
      10_000,
      'the cancelled message',
    );
    expect(cancelled.content).toContain(`Cancelled by <@${BOB.id}>`);
    expect(cancelled.components).toEqual([]);
    expect((await h.jobs.status(`discord-${queued.id}`))?.state).toBe('cancelled');
    const callsBefore = engine.calls;

    // Progress: the held job, once released, edits its message with percent and the latent preview.
    engine.release();
    const grid = await fake.waitFor(() => isGrid(fake.originalMessage(busy)), 30_000, 'the held grid');
    const progressEdits = fake
      .find('PATCH', new RegExp(`/webhooks/${fake.appId}/${escapeRegExp(busy.token)}/messages/`), 200)
      .filter((r) => (r.body as { content?: string }).content?.includes('Generating'));
    expect(progressEdits.length).toBeGreaterThanOrEqual(1);
    expect((progressEdits[0]!.body as { content: string }).content).toMatch(
      /Generating… \d+% \(step \d+\/\d+\)/,
    );
    expect(progressEdits.some((r) => r.files.some((f) => f.name === 'preview.png'))).toBe(true);
    expect(grid.attachments.map((a) => a.filename)).toEqual([`discord-${busy.id}-grid.png`]);
    // The cancelled job never ran.
    await new Promise((r) => setTimeout(r, 300));
    expect(engine.calls).toBe(callsBefore);
  });
});
