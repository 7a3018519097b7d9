import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_SUFFIXES } from '../../core/config.ts';
import { jobIdFor } from '../../core/jobspec.ts';
import type { QueueWorker } from '../../queue/index.ts';
import {
  buttonsOf,
  FakeSlack,
  newTriggerId,
  type SlackBlock,
  shownText,
  signRequest,
  textOf,
} from '../fakes/slack/index.ts';
import { startTestRedis, type TestRedis, uniquePrefix } from '../helpers/redis.ts';
import {
  buildDemo,
  fileMessages,
  gridControls,
  gridTiles,
  recordIdOf,
  startTestWorker,
  statusMessage,
  structuralDistance,
  TestBot,
  waitForGrid,
} from './slack-harness.ts';

/**
 * The Slack story end to end: the real bolt app (HTTP mode, signed requests) on the real
 * conversation service, a real queue and worker on redis-server, the demo model, and the fake
 * Slack Web API. Assertions read what a user would see in the fake, and the records in Redis.
 */

const SLACK_ACK_LIMIT_MS = 3000;

let redis: TestRedis;
let demo: Awaited<ReturnType<typeof buildDemo>>;
const fake = new FakeSlack();
const prefix = uniquePrefix('slack');
let worker: QueueWorker | undefined;
let bot: TestBot;

beforeAll(async () => {
  [redis, demo] = await Promise.all([startTestRedis(), buildDemo(), fake.start()]).then(
    ([r, d]) => [r, d] as const,
  );
  worker = await startTestWorker(redis.url, prefix, demo.load);
  bot = await TestBot.start({ redisUrl: redis.url, prefix, fake });
});

afterAll(async () => {
  await bot?.stop();
  await worker?.close({ releaseNow: true });
  await fake.stop();
  await redis?.stop();
  await demo?.remove();
});

/** Sends /imagine and returns its job id (derived from the trigger id, as the adapter does). */
async function imagine(text: string, init: { user?: string; channel?: string } = {}) {
  const triggerId = newTriggerId();
  const result = await bot.sender.slashCommand({ text, triggerId, ...init });
  return { result, jobId: jobIdFor('slack', triggerId) };
}

describe('the story', () => {
  let firstGrid: string;
  let firstGridMessageTs: string;

  it('/imagine is acked at once, shows seeds and queue position, edits progress, then posts the grid with buttons', async () => {
    const { result, jobId } = await imagine('a lighthouse at dusk --seed 1000 --steps 12 --size 256x256');
    expect(result.status).toBe(200);
    expect(result.ackMs).toBeLessThan(SLACK_ACK_LIMIT_MS);

    const status = await fake.waitFor(() => statusMessage(fake, jobId), 10_000, 'the queued message');
    expect(status.history[0]).toMatch(/Queued \((next in line|position \d+ in the queue)\)/u);
    expect(status.history[0]).toContain('`1000` `1001` `1002` `1003`');
    expect(buttonsOf(status).map((b) => b.action_id)).toEqual(['imagine_cancel']);

    const controls = await waitForGrid(fake, jobId);
    // Progress went through chat.update on the same message before the result.
    expect(status.history.some((t) => /Generating… \d+% \(step \d+\/\d+\)/u.test(t))).toBe(true);
    // The placeholder is removed once the grid is up.
    await fake.waitFor(() => status.deleted || undefined, 5000, 'the status message removed');

    // The grid is a file shared into the channel, with the caption, right before its buttons.
    const [gridMessage, ...more] = fileMessages(fake, `${jobId}-grid`);
    expect(more).toHaveLength(0);
    expect(gridMessage!.channel).toBe('C0GENERAL');
    expect(gridMessage!.threadTs).toBeUndefined();
    expect(shownText(gridMessage!)).toContain('*a lighthouse at dusk*');
    expect(shownText(gridMessage!)).toContain('1: `1000` · 2: `1001` · 3: `1002` · 4: `1003`');
    expect(shownText(gridMessage!)).toContain('pndm · 12 steps · cfg 7.5 · 256×256');
    expect(shownText(gridMessage!)).toContain('demo model');
    const png = gridMessage!.files[0]!.bytes!;
    expect(png.subarray(1, 4).toString('latin1')).toBe('PNG');
    expect((await gridTiles(png)).width).toBe(256);
    expect(fake.messages.indexOf(controls)).toBe(fake.messages.indexOf(gridMessage!) + 1);

    expect(buttonsOf(controls).map((b) => b.action_id)).toEqual([
      'imagine_refine_1',
      'imagine_refine_2',
      'imagine_refine_3',
      'imagine_refine_4',
      'imagine_reroll',
      'imagine_upscale_1',
      'imagine_upscale_2',
      'imagine_upscale_3',
      'imagine_upscale_4',
      'imagine_vary_subtle_1',
      'imagine_vary_subtle_2',
      'imagine_vary_subtle_3',
      'imagine_vary_subtle_4',
    ]);
    expect(buttonsOf(controls).map((b) => b.value)).toContain(`refine:${jobId}:1`);

    const record = await bot.jobs.record(jobId);
    expect(record?.state.status.state).toBe('done');
    expect(record?.spec.seeds).toEqual([1000, 1001, 1002, 1003]);
    firstGrid = jobId;
    firstGridMessageTs = controls.ts;
  });

  it('survives a bot restart between the grid and the button press', async () => {
    const oldUrl = bot.url;
    await bot.restart();
    // The old process's server is gone.
    await expect(fetch(oldUrl, { method: 'POST' })).rejects.toThrow();
    const controls = gridControls(fake, firstGrid)!;
    expect((await bot.sender.pressButton({ message: controls, actionId: 'imagine_upscale_1' })).status).toBe(
      200,
    );
    await fake.waitFor(() => fileMessages(fake, `${firstGrid}-1`)[0], 10_000, 'U1 after a restart');
  });

  it('button 2 refines image 2: seed base+1 with each suffix, in the thread, tiles closest to old tile 2', async () => {
    const controls = gridControls(fake, firstGrid)!;
    const press = await bot.sender.pressButton({ message: controls, actionId: 'imagine_refine_2' });
    expect(press.status).toBe(200);
    expect(press.ackMs).toBeLessThan(SLACK_ACK_LIMIT_MS);

    // The refinement's status message is a reply in the grid's thread.
    const status = await fake.waitFor(
      () =>
        fake.messages.find(
          (m) => m.threadTs === firstGridMessageTs && /refining image 2/u.test(m.history[0] ?? ''),
        ),
      10_000,
      'the refinement queued message',
    );
    const refineId = recordIdOf(status);
    const refined = await waitForGrid(fake, refineId);
    expect(refined.threadTs).toBe(firstGridMessageTs);

    const record = await bot.jobs.record(refineId);
    expect(record?.spec.kind).toBe('refine');
    expect(record?.spec.parent).toEqual({ gridId: firstGrid, index: 1 });
    expect(record?.spec.seeds).toEqual([1001, 1001, 1001, 1001]);
    expect(record?.spec.prompts).toEqual(DEFAULT_SUFFIXES.map((s) => `a lighthouse at dusk${s}`));

    const [newGrid] = fileMessages(fake, `${refineId}-grid`);
    expect(newGrid!.threadTs).toBe(firstGridMessageTs);
    const [oldGrid] = fileMessages(fake, `${firstGrid}-grid`);
    const before = await gridTiles(oldGrid!.files[0]!.bytes!);
    const after = await gridTiles(newGrid!.files[0]!.bytes!);
    // Composition distance: a refinement keeps image 2's seed (its layout) while each suffix may
    // shift the colours, which a per-pixel difference would mostly measure instead.
    for (const [k, tile] of after.tiles.entries()) {
      const distances = before.tiles.map((old) => structuralDistance(tile, old));
      const toTile2 = distances[1]!;
      for (const [j, d] of distances.entries()) {
        if (j !== 1) expect(toTile2, `new tile ${k + 1} vs old tile ${j + 1}`).toBeLessThan(d);
      }
    }
  });

  it('U3 posts image 3 full-size in the thread', async () => {
    const controls = gridControls(fake, firstGrid)!;
    expect((await bot.sender.pressButton({ message: controls, actionId: 'imagine_upscale_3' })).status).toBe(
      200,
    );
    const message = await fake.waitFor(() => fileMessages(fake, `${firstGrid}-3`)[0], 10_000, 'U3');
    expect(message.threadTs).toBe(firstGridMessageTs);
    expect(shownText(message)).toContain('Image 3 (seed `1002`)');
    const bytes = message.files[0]!.bytes!;
    expect(bytes.equals((await bot.jobs.imagePng(firstGrid, 2))!)).toBe(true);
    const { width, height } = await import('sharp').then((m) => m.default(bytes).metadata());
    expect([width, height]).toEqual([256, 256]);
  });

  it('🔄 rerolls with new seeds and the same prompt', async () => {
    const controls = gridControls(fake, firstGrid)!;
    expect((await bot.sender.pressButton({ message: controls, actionId: 'imagine_reroll' })).status).toBe(
      200,
    );
    const status = await fake.waitFor(
      () =>
        fake.messages.find((m) => m.threadTs === firstGridMessageTs && /reroll/u.test(m.history[0] ?? '')),
      10_000,
      'the reroll queued message',
    );
    const rerollId = recordIdOf(status);
    await waitForGrid(fake, rerollId);
    const record = await bot.jobs.record(rerollId);
    expect(record?.spec.kind).toBe('reroll');
    expect(record?.spec.prompts).toEqual(Array(4).fill('a lighthouse at dusk'));
    expect(record?.spec.seeds).toHaveLength(4);
    expect(record?.spec.seeds).not.toEqual([1000, 1001, 1002, 1003]);
    const base = record!.spec.seeds[0]!;
    expect(record?.spec.seeds).toEqual([0, 1, 2, 3].map((k) => (base + k) % 2 ** 32));
  });

  it('Cancel stops a queued job and says so on its message', async () => {
    // No worker: the job stays queued.
    await worker?.close({ releaseNow: true });
    worker = undefined;
    const { jobId } = await imagine('a queued fox --seed 7');
    const status = await fake.waitFor(() => statusMessage(fake, jobId), 10_000, 'the queued message');
    const press = await bot.sender.pressButton({ message: status, actionId: 'imagine_cancel' });
    expect(press.status).toBe(200);
    await fake.waitFor(
      () => /Cancelled by <@U0ALICE>/u.test(shownText(status)),
      10_000,
      'the cancelled edit',
    );
    expect(buttonsOf(status)).toHaveLength(0);
    expect((await bot.jobs.status(jobId))?.state).toBe('cancelled');

    worker = await startTestWorker(redis.url, prefix, demo.load);
    // A later job runs; the cancelled one never does.
    const { jobId: next } = await imagine('after the cancel --seed 8');
    await waitForGrid(fake, next);
    expect(fileMessages(fake, `${jobId}-grid`)).toHaveLength(0);
  });
});

describe('user text is shown literally', () => {
  const HOSTILE =
    '*bold* _it_ ~gone~ `code` > quote <!channel> <!here> <@U0BOB> <https://evil.example|click> &lt; ' +
    '[Download](https://evil.example/x) **b** # heading @everyone https://evil.example/bare';

  /** Every text object in a payload that Slack would read as mrkdwn. */
  function mrkdwnTexts(blocks: readonly SlackBlock[]): string[] {
    const found: string[] = [];
    const visit = (value: unknown): void => {
      if (Array.isArray(value)) value.forEach(visit);
      else if (typeof value === 'object' && value !== null) {
        const o = value as Record<string, unknown>;
        if (o.type === 'mrkdwn' && typeof o.text === 'string') found.push(o.text);
        Object.values(o).forEach(visit);
      }
    };
    visit(blocks);
    return found;
  }

  it('a prompt full of mrkdwn, mentions and links reaches Slack as literal rich text, pinging no one', async () => {
    const { jobId } = await imagine(`${HOSTILE} --seed 7 --steps 2 --size 64x64`);
    const controls = await waitForGrid(fake, jobId);
    const [gridMessage] = fileMessages(fake, `${jobId}-grid`);
    const status = statusMessage(fake, jobId);
    for (const message of [gridMessage!, controls, ...(status ? [status] : [])]) {
      // Nothing of it is in mrkdwn (which has no escapes), and no file comment (always mrkdwn).
      expect(mrkdwnTexts(message.blocks)).toEqual([]);
      expect(message.files.every((f) => f.shared?.initialComment === undefined)).toBe(true);
    }
    // The caption: the prompt is one plain text element, exactly as typed; the only user element is the owner.
    const caption = [gridMessage!, controls].flatMap((m) => m.blocks).find((b) => b.type === 'rich_text')!;
    const elements = (caption.elements as unknown as { elements: Record<string, unknown>[] }[])[0]!.elements;
    expect(elements.some((e) => e.type === 'text' && e.text === HOSTILE)).toBe(true);
    expect(elements.filter((e) => e.type !== 'text')).toEqual([{ type: 'user', user_id: 'U0ALICE' }]);
    // The plain fallbacks (notifications) can't link or ping either: &, <, > are escaped there.
    for (const message of fake.messages.filter((m) => m.text.includes('bold'))) {
      expect(message.text).not.toMatch(/<!channel>|<!here>|<@U0BOB>|<https:/u);
    }
    // A bare URL in the prompt is never unfurled into a preview.
    const posts = fake.callsTo('chat.postMessage').filter((c) => String(c.params.text).includes('evil'));
    expect(posts.length).toBeGreaterThanOrEqual(2); // the status, then the controls under the grid
    for (const post of posts) {
      expect(String(post.params.unfurl_links)).toBe('false');
      expect(String(post.params.unfurl_media)).toBe('false');
    }
  });

  it('a private error quoting the input shows it literally', async () => {
    await imagine('a cat --seed *bold*<!channel>');
    const ephemeral = await fake.waitFor(() => fake.ephemerals.find((e) => e.text.includes('*bold*')));
    expect(mrkdwnTexts(ephemeral.blocks)).toEqual([]);
    expect(ephemeral.text).not.toContain('<!channel>');
    expect(shownText(ephemeral)).toContain('*bold*<!channel>');
  });
});

describe('failure paths', () => {
  it('bad input gets an ephemeral error saying what is allowed; nothing is queued or posted', async () => {
    const posts = fake.callsTo('chat.postMessage').length;
    const { result, jobId } = await imagine('a cat --bogus 3');
    expect(result.status).toBe(200);
    const ephemeral = await fake.waitFor(() => fake.ephemerals.find((e) => e.text.includes('--bogus')));
    expect(ephemeral.via).toBe('response_url');
    expect(ephemeral.user).toBe('U0ALICE');
    expect(ephemeral.text).toContain('Allowed options');
    expect(await bot.jobs.status(jobId)).toBeNull();
    expect(fake.callsTo('chat.postMessage')).toHaveLength(posts);

    const { jobId: tooMany } = await imagine('a cat --steps 999');
    await fake.waitFor(() =>
      fake.ephemerals.find((e) => /steps/iu.test(e.text) && e.text !== ephemeral.text),
    );
    expect(await bot.jobs.status(tooMany)).toBeNull();
  });

  it('a channel the bot cannot post in: the job is cancelled and the user told privately', async () => {
    fake.fail('chat.postMessage', { error: 'channel_not_found' });
    const { result, jobId } = await imagine('a cat in a private room --seed 9', { channel: 'C0PRIVATE' });
    expect(result.status).toBe(200);
    const ephemeral = await fake.waitFor(() =>
      fake.ephemerals.find((e) => e.text.includes('cancelled this request')),
    );
    expect(ephemeral.user).toBe('U0ALICE');
    expect(ephemeral.text).toContain('/invite');
    let state: string | undefined;
    for (let i = 0; i < 100 && state !== 'cancelled'; i++) {
      state = (await bot.jobs.status(jobId))?.state;
      if (state !== 'cancelled') await new Promise((r) => setTimeout(r, 50));
    }
    expect(state).toBe('cancelled');
    expect(fileMessages(fake, `${jobId}-grid`)).toHaveLength(0);
  });

  it('the same interaction delivered twice makes one job and one grid', async () => {
    const triggerId = newTriggerId();
    const signed = signRequest(
      bot.sender.slashCommandBody({ text: 'twice delivered --seed 5', triggerId }),
      bot.sender.signingSecret,
    );
    const [a, b] = await Promise.all([bot.sender.post(signed), bot.sender.post(signed)]);
    expect([a.status, b.status]).toEqual([200, 200]);
    const jobId = jobIdFor('slack', triggerId);
    await waitForGrid(fake, jobId);
    // Let any second delivery land before counting.
    await new Promise((r) => setTimeout(r, 500));
    expect(
      fake.messages.filter((m) => buttonsOf(m).some((x) => x.value === `cancel:${jobId}:0`)),
    ).toHaveLength(1);
    expect(fileMessages(fake, `${jobId}-grid`)).toHaveLength(1);
    expect(
      fake.messages.filter((m) => buttonsOf(m).some((x) => x.value === `refine:${jobId}:0`)),
    ).toHaveLength(1);
  });

  it('a chat API that answers 429 (Retry-After 1) then 200 posts once, after the wait', async () => {
    fake.fail('files.completeUploadExternal', { status: 429, retryAfter: 1 });
    const { jobId } = await imagine('rate limited --seed 6');
    await waitForGrid(fake, jobId);
    const completes = fake.callsTo('files.completeUploadExternal');
    const limited = completes.find((c) => c.status === 429)!;
    const succeeded = completes.find((c) => c.status === 200 && c.at >= limited.at)!;
    expect(succeeded.at - limited.at).toBeGreaterThanOrEqual(900);
    expect(fileMessages(fake, `${jobId}-grid`)).toHaveLength(1);
    expect(
      fake.messages.filter((m) => buttonsOf(m).some((x) => x.value === `refine:${jobId}:0`)),
    ).toHaveLength(1);
  });

  it('a 5xx while posting the buttons is retried without posting the grid twice', async () => {
    fake.fail('chat.postMessage', { status: 503 });
    // The 503 hits the queued message first (best effort, not retried); fail the buttons post too.
    fake.fail('chat.postMessage', { status: 500 });
    const { jobId } = await imagine('server errors --seed 9');
    await waitForGrid(fake, jobId);
    expect(fileMessages(fake, `${jobId}-grid`)).toHaveLength(1);
    expect(
      fake.messages.filter((m) => buttonsOf(m).some((x) => x.value === `refine:${jobId}:0`)),
    ).toHaveLength(1);
  });

  it('a forged or stale signature is refused with 401 and nothing runs', async () => {
    const posts = fake.calls.length;
    const forged = await bot.sender.slashCommand({ text: 'forged' }, { secret: 'guessed-secret' });
    expect(forged.status).toBe(401);
    const stale = await bot.sender.slashCommand(
      { text: 'replayed' },
      { timestampSec: Math.floor(Date.now() / 1000) - 6 * 60 },
    );
    expect(stale.status).toBe(401);
    const unsigned = await bot.sender.post({
      body: bot.sender.slashCommandBody({ text: 'unsigned' }),
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
    });
    expect(unsigned.status).toBe(401);
    await new Promise((r) => setTimeout(r, 300));
    expect(fake.calls.length).toBe(posts);
  });

  it('a tampered or unknown button value gets an ephemeral error', async () => {
    const controls = fake.messagesWithButtons('imagine_refine_')[0]!;
    const before = fake.ephemerals.length;
    await bot.sender.pressButton({
      message: controls,
      actionId: 'imagine_refine_2',
      value: 'refine:slack-x:1;DROP',
    });
    await bot.sender.pressButton({
      message: controls,
      actionId: 'imagine_refine_2',
      value: 'refine:slack-gone:1',
    });
    await fake.waitFor(() => fake.ephemerals.length >= before + 2 || undefined);
    const texts = fake.ephemerals.slice(before).map((e) => e.text);
    expect(texts.some((t) => /not valid/u.test(t))).toBe(true);
    expect(texts.some((t) => /expired/u.test(t))).toBe(true);
  });

  it('works in a DM with the bot and joins a public channel it is not in yet', async () => {
    const { jobId: dm } = await imagine('in a DM --seed 11', { channel: 'D0DM' });
    const dmGrid = await waitForGrid(fake, dm);
    expect(dmGrid.channel).toBe('D0DM');
    expect(fileMessages(fake, `${dm}-grid`)[0]?.channel).toBe('D0DM');

    fake.addChannel({ id: 'C0NEW', botIsMember: false });
    const { jobId: joined } = await imagine('new channel --seed 12', { channel: 'C0NEW' });
    const grid = await waitForGrid(fake, joined);
    expect(grid.channel).toBe('C0NEW');
    expect(fake.okCallsTo('conversations.join')).toHaveLength(1);
    expect(textOf(grid)).toContain('new channel');
  });
});
