import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jobIdFor } from '../../core/jobspec.ts';
import { readPngText } from '../../models/png.ts';
import { createNoopEngine, type QueueWorker } from '../../queue/index.ts';
import { buttonsOf, FakeSlack, newTriggerId, shownText } from '../fakes/slack/index.ts';
import { startTestRedis, type TestRedis, uniquePrefix } from '../helpers/redis.ts';
import {
  fileMessages,
  gridControls,
  recordIdOf,
  startTestWorker,
  TEST_SETTINGS,
  TestBot,
  waitForGrid,
} from './slack-harness.ts';

/**
 * Vary and Upscale ×2 on Slack end to end: the real bolt app on the real service, a real queue and
 * worker on redis-server, the fake Slack Web API. The noop engine draws the pixels (they don't matter
 * here; the seed-exact check against the engine runs in test/queue/img2img-worker.test.ts).
 */

let redis: TestRedis;
const fake = new FakeSlack();
const prefix = uniquePrefix('slack-vary');
let worker: QueueWorker | undefined;
let bot: TestBot;

beforeAll(async () => {
  [redis] = await Promise.all([startTestRedis(), fake.start()]);
  worker = await startTestWorker(redis.url, prefix, async () => createNoopEngine());
  // 256x256 grids; twice that is the pixel limit, so an upscaled image can't be upscaled again.
  bot = await TestBot.start({ redisUrl: redis.url, prefix, fake, settings: TEST_SETTINGS });
});

afterAll(async () => {
  await bot?.stop();
  await worker?.close({ releaseNow: true });
  await fake.stop();
  await redis?.stop();
});

/** The newest message whose buttons point at `recordId` with the given action. */
function withButton(recordId: string, value: string) {
  return fake.messages.find(
    (m) => !m.deleted && buttonsOf(m).some((b) => b.value === value && b.value.includes(recordId)),
  );
}

describe('Vary and Upscale ×2 on Slack', () => {
  let gridId: string;

  it('V2 under a grid: four variations of image 2 (subtle), on new consecutive seeds, saying so', async () => {
    const triggerId = newTriggerId();
    await bot.sender.slashCommand({ text: 'a lighthouse --seed 500', triggerId });
    gridId = jobIdFor('slack', triggerId);
    const controls = await waitForGrid(fake, gridId);
    expect(buttonsOf(controls).map((b) => b.value)).toContain(`vary:${gridId}:1:subtle`);
    const press = await bot.sender.pressButton({ message: controls, actionId: 'imagine_vary_subtle_2' });
    expect(press.status).toBe(200);
    const status = await fake.waitFor(
      () =>
        fake.messages.find((m) =>
          /variations of image 2 \(subtle, strength 0\.35\)/u.test(m.history[0] ?? ''),
        ),
      10_000,
      'the vary queued message',
    );
    const varyId = recordIdOf(status);
    await waitForGrid(fake, varyId);
    const record = await bot.jobs.record(varyId);
    expect(record?.spec).toMatchObject({
      kind: 'vary',
      parent: { gridId, index: 1 },
      init: { from: 'grid', gridId, index: 1 },
      strength: 0.35,
      prompts: Array(4).fill('a lighthouse'),
    });
    const seeds = record?.spec.seeds ?? [];
    expect(seeds.map((s) => (s - seeds[0]! + 2 ** 32) % 2 ** 32)).toEqual([0, 1, 2, 3]);
    const [gridMessage] = fileMessages(fake, `${varyId}-grid`);
    expect(shownText(gridMessage!)).toContain('variations of image 2 (subtle, strength 0.35)');
  });

  it('U3 shows Vary (Subtle), Vary (Strong) and Upscale ×2; Strong varies at 0.6; Upscale ×2 doubles the size', async () => {
    const controls = gridControls(fake, gridId)!;
    await bot.sender.pressButton({ message: controls, actionId: 'imagine_upscale_3' });
    await fake.waitFor(() => fileMessages(fake, `${gridId}-3`)[0], 10_000, 'U3');
    const imageButtons = await fake.waitFor(
      () => withButton(gridId, `upscale2x:${gridId}:2`),
      10_000,
      'the image buttons',
    );
    expect(buttonsOf(imageButtons).map((b) => [b.text?.text ?? '', b.action_id])).toEqual([
      ['Vary (Subtle)', 'imagine_vary_subtle_3'],
      ['Vary (Strong)', 'imagine_vary_strong_3'],
      ['Upscale ×2', 'imagine_upscale2x_3'],
    ]);

    await bot.sender.pressButton({ message: imageButtons, actionId: 'imagine_vary_strong_3' });
    const strong = await fake.waitFor(
      () =>
        fake.messages.find((m) =>
          /variations of image 3 \(strong, strength 0\.6\)/u.test(m.history[0] ?? ''),
        ),
      10_000,
      'the strong vary',
    );
    const strongId = recordIdOf(strong);
    await waitForGrid(fake, strongId);
    expect((await bot.jobs.record(strongId))?.spec).toMatchObject({
      kind: 'vary',
      strength: 0.6,
      parent: { index: 2 },
    });

    await bot.sender.pressButton({ message: imageButtons, actionId: 'imagine_upscale2x_3' });
    const up = await fake.waitFor(
      () => fake.messages.find((m) => /image 3 upscaled ×2/u.test(m.history[0] ?? '')),
      10_000,
      'the upscale',
    );
    const upId = recordIdOf(up);
    await waitForGrid(fake, upId);
    const record = await bot.jobs.record(upId);
    expect(record?.spec).toMatchObject({
      kind: 'upscale',
      width: 512,
      height: 512,
      seeds: [502],
      strength: 0.4,
    });
    const [file] = fileMessages(fake, `${upId}-grid`);
    const png = file!.files[0]!.bytes!;
    expect(await sharp(png).metadata()).toMatchObject({ width: 512, height: 512, format: 'png' });
    expect(readPngText(png).parameters).toMatch(
      /Seed: 502, Size: 512x512, .*Denoising strength: 0\.4, Init image: /u,
    );

    // Twice 512x512 is over MAX_PIXELS: said before anything is queued.
    const upControls = gridControls(fake, upId)!;
    await bot.sender.pressButton({ message: upControls, actionId: 'imagine_upscale_1' });
    const upImage = await fake.waitFor(
      () => withButton(upId, `upscale2x:${upId}:0`),
      10_000,
      'the upscaled image buttons',
    );
    const before = (await bot.jobs.record(upId)) !== null;
    expect(before).toBe(true);
    await bot.sender.pressButton({ message: upImage, actionId: 'imagine_upscale2x_1' });
    const refusal = await fake.waitFor(
      () => fake.ephemerals.find((e) => /Upscale ×2 would make 1024x1024/u.test(e.text ?? '')),
      10_000,
      'the refusal',
    );
    expect(refusal.text).toContain('the limit here is 262144 pixels');
  });
});
