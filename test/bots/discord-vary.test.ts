import type { APIMessage } from 'discord.js';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeControl } from '../../bots/service.ts';
import { readPngText } from '../../models/png.ts';
import { shownContent } from '../fakes/discord/payloads.ts';
import { buttonsOf } from '../fakes/discord/server.ts';
import { startTestRedis, type TestRedis } from '../helpers/redis.ts';
import {
  ALICE,
  BOB,
  button,
  type GatedEngine,
  type Harness,
  loadTinyEngine,
  startHarness,
} from './discord-harness.ts';

/**
 * Vary and Upscale ×2 on Discord end to end: real discord.js against the fake, the real service, queue
 * and worker on redis-server, tiny-sd (with its VAE encoder) on onnxruntime. OWNER_ONLY_BUTTONS is on,
 * so the new buttons follow the same access rule as the others.
 */

function labels(message: APIMessage): string[][] {
  return buttonsOf(message).map((row) => row.map((b) => b.label));
}

/** A finished grid message: one attachment and its rows of buttons (refine first). */
function isGrid(message: APIMessage | undefined): APIMessage | undefined {
  if (message === undefined || message.attachments.length !== 1) return undefined;
  return labels(message)[0]?.[0] === '1' ? message : undefined;
}

describe('Vary and Upscale ×2 on Discord (real discord.js, real queue, tiny-sd)', () => {
  let redis: TestRedis;
  let engine: GatedEngine;
  let h: Harness;

  beforeAll(async () => {
    redis = await startTestRedis();
    engine = await loadTinyEngine();
    h = await startHarness({ redisUrl: redis.url, engine, settings: { ownerOnlyButtons: true } });
  });
  afterAll(async () => {
    engine?.release();
    await h?.close();
    await engine?.inner.close();
    await redis?.stop();
  });

  it('V2 makes four variations of image 2; U2’s message varies (strong) and upscales ×2; limits and access hold', async () => {
    const { fake } = h;
    const command = fake.slashCommand({
      options: { prompt: 'a lighthouse at dusk', seed: 1000 },
      user: ALICE,
    });
    const grid = await fake.waitFor(() => isGrid(fake.originalMessage(command)), 30_000, 'the grid');
    const gridId = `discord-${command.id}`;
    // Three of Discord's five rows of five: refine + reroll, U1–U4, V1–V4.
    expect(labels(grid)).toEqual([
      ['1', '2', '3', '4', '🔄'],
      ['U1', 'U2', 'U3', 'U4'],
      ['V1', 'V2', 'V3', 'V4'],
    ]);
    expect(decodeControl(button(grid, 'V2'))).toEqual({
      action: 'vary',
      recordId: gridId,
      index: 1,
      strength: 'subtle',
    });

    // Someone else may not vary the owner's grid (OWNER_ONLY_BUTTONS), like every other button.
    const stranger = fake.pressButton({ messageId: grid.id, customId: button(grid, 'V2'), user: BOB });
    const refusal = await fake.waitFor(
      () => fake.messagesOf(stranger).find((m) => (m.flags ?? 0) & 64),
      10_000,
      'the refusal',
    );
    expect(shownContent(refusal.content)).toBe(
      'Only the person who made this grid can use its buttons here.',
    );

    const press = fake.pressButton({ messageId: grid.id, customId: button(grid, 'V2'), user: ALICE });
    const varied = await fake.waitFor(() => isGrid(fake.messagesOf(press)[0]), 30_000, 'the vary grid');
    const record = await h.jobs.record(`discord-${press.id}`);
    expect(record?.spec).toMatchObject({
      kind: 'vary',
      parent: { gridId, index: 1 },
      init: { from: 'grid', gridId, index: 1 },
      strength: 0.35,
      prompts: Array(4).fill('a lighthouse at dusk'),
    });
    const seeds = record?.spec.seeds ?? [];
    expect(seeds.map((s) => (s - seeds[0]! + 2 ** 32) % 2 ** 32)).toEqual([0, 1, 2, 3]);
    expect(varied.content).toContain('variations of image 2 (subtle, strength 0.35)');
    expect(varied.content).toContain(`1: \`${seeds[0]}\``);
    const png = fake.attachmentData(varied.attachments[0]!);
    expect(readPngText(png).parameters).toContain(`Denoising strength: 0.35, Init image: ${gridId} image 2`);

    // U2: the image with Vary (Subtle), Vary (Strong) and Upscale ×2.
    const u2 = fake.pressButton({ messageId: grid.id, customId: button(grid, 'U2'), user: ALICE });
    const image = await fake.waitFor(
      () => fake.messagesOf(u2).find((m) => m.attachments.length === 1),
      15_000,
      'the full-size image',
    );
    expect(labels(image)).toEqual([['Vary (Subtle)', 'Vary (Strong)', 'Upscale ×2']]);
    const strong = fake.pressButton({
      messageId: image.id,
      customId: button(image, 'Vary (Strong)'),
      user: ALICE,
    });
    const strongGrid = await fake.waitFor(
      () => isGrid(fake.messagesOf(strong)[0]),
      30_000,
      'the strong vary',
    );
    expect(strongGrid.content).toContain('variations of image 2 (strong, strength 0.6)');
    expect((await h.jobs.record(`discord-${strong.id}`))?.spec).toMatchObject({
      kind: 'vary',
      strength: 0.6,
    });

    const up = fake.pressButton({ messageId: image.id, customId: button(image, 'Upscale ×2'), user: ALICE });
    const upGrid = await fake.waitFor(() => isGrid(fake.messagesOf(up)[0]), 30_000, 'the upscaled image');
    expect(upGrid.content).toContain('image 2 upscaled ×2');
    const upPng = fake.attachmentData(upGrid.attachments[0]!);
    expect(await sharp(upPng).metadata()).toMatchObject({ width: 128, height: 128, format: 'png' });
    expect(readPngText(upPng).parameters).toMatch(
      new RegExp(
        `Seed: 1001, Size: 128x128, .*Denoising strength: 0\\.4, Init image: ${gridId} image 2`,
        'u',
      ),
    );
    expect((await h.jobs.record(`discord-${up.id}`))?.spec).toMatchObject({
      kind: 'upscale',
      parent: { gridId, index: 1 },
      seeds: [1001],
      strength: 0.4,
    });

    // Again ×2 would be 256x256, over MAX_PIXELS (128x128 here): refused, nothing queued.
    const again = fake.pressButton({ messageId: upGrid.id, customId: button(upGrid, 'U1'), user: ALICE });
    const upImage = await fake.waitFor(
      () => fake.messagesOf(again).find((m) => m.attachments.length === 1),
      15_000,
      'the upscaled image message',
    );
    const tooBig = fake.pressButton({
      messageId: upImage.id,
      customId: button(upImage, 'Upscale ×2'),
      user: ALICE,
    });
    const said = await fake.waitFor(
      () => fake.messagesOf(tooBig).find((m) => (m.flags ?? 0) & 64),
      10_000,
      'the size refusal',
    );
    expect(shownContent(said.content)).toContain(
      'Upscale ×2 would make 256x256 (65536 pixels); the limit here is 16384 pixels',
    );
    expect(await h.jobs.record(`discord-${tooBig.id}`)).toBeNull();

    // A forged button (an unknown strength, an image out of range) is refused as an invalid control.
    for (const forged of [`vary:${gridId}:1:wild`, `vary:${gridId}:7:subtle`, `vary:${gridId}:1`]) {
      const bad = fake.pressButton({ messageId: grid.id, customId: forged, user: ALICE, forge: true });
      const answer = await fake.waitFor(
        () => fake.messagesOf(bad).find((m) => (m.flags ?? 0) & 64),
        10_000,
        `the answer to ${forged}`,
      );
      expect(shownContent(answer.content)).toBe(
        'That button is not valid (it may have been altered or come from another app). Use the buttons on a grid.',
      );
    }
  }, 120_000);
});
