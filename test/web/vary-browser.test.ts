import { mkdir } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, startTestApp, type TestApp } from './app-helper.ts';
import { launchChromium, newVisitor, openPlayground, eventually as poll, texts } from './browser-helper.ts';

const ARTIFACTS = fileURLToPath(new URL('../artifacts/', import.meta.url));

// Checks here wait on demo-model jobs queued one behind another: 45 s, not the helper's 30 s.
const eventually = <T>(read: () => Promise<T>, check: (value: T) => void): Promise<T> =>
  poll(read, check, 45_000);

/**
 * Vary and Upscale ×2 in the playground page on a phone-sized viewport (headless Chromium, the real
 * application with the demo model): V1–V4 under a grid, both Vary strengths and Upscale ×2 under a
 * full-size image, the new jobs' cards saying where they came from, and the size limit explained.
 */
describe('playground: Vary and Upscale ×2 (headless Chromium, 390×844)', () => {
  let t: TestApp;
  let browser: Browser;

  beforeAll(async () => {
    t = await startTestApp({ MAX_PIXELS: String(256 * 256), DEFAULT_WIDTH: '128', DEFAULT_HEIGHT: '128' });
    browser = await launchChromium();
    await mkdir(ARTIFACTS, { recursive: true });
  }, 120_000);
  afterAll(async () => {
    await browser?.close();
    await t?.stop();
  });

  it('V2 varies image 2; U2 → Vary (Strong) and Upscale ×2; a second ×2 is refused with the reason', async () => {
    const { context, page } = await newVisitor(browser, { width: 390, height: 844 });
    const problems: string[] = [];
    page.on('pageerror', (error) => problems.push(error.message));
    await openPlayground(page, t.url);
    await page.fill('#prompt', '/imagine a lighthouse at dusk --seed 40');
    await page.press('#prompt', 'Enter');

    const first = page.locator('.card.job').first();
    await first.locator('img.grid').waitFor({ timeout: 45_000 });
    await eventually(texts(first.locator('.vary-row button')), (v) =>
      expect(v).toEqual(['V1', 'V2', 'V3', 'V4']),
    );
    const gridId = (await first.getAttribute('data-job'))!;

    // The rows fit the phone's width: nothing sticks out sideways.
    const layout = await page.evaluate(() => ({
      innerWidth: window.innerWidth,
      docWidth: document.documentElement.scrollWidth,
      rights: Array.from(document.querySelectorAll('.controls .btn')).map(
        (b) => b.getBoundingClientRect().right,
      ),
    }));
    expect(layout.docWidth).toBeLessThanOrEqual(layout.innerWidth);
    for (const right of layout.rights) expect(right).toBeLessThanOrEqual(layout.innerWidth);

    // V2: a new card, four variations of image 2 (subtle).
    await first.locator('.vary-row button', { hasText: 'V2' }).click();
    const second = page.locator('.card.job').nth(1);
    await eventually(texts(second.locator('.who')), (v) =>
      expect(v.join(' ')).toContain('variations of image 2 (subtle, strength 0.35)'),
    );
    await second.locator('img.grid').waitFor({ timeout: 45_000 });
    const varyId = (await second.getAttribute('data-job'))!;
    const vary = await call<Record<string, unknown>>(`${t.url}/api/jobs/${varyId}`, {
      headers: { cookie: (await context.cookies()).map((c) => `${c.name}=${c.value}`).join('; ') },
    });
    expect(vary.body).toMatchObject({
      kind: 'vary',
      parent: { id: gridId, n: 2 },
      init: { from: 'grid', id: gridId, n: 2 },
      strength: 0.35,
    });
    const seeds = vary.body.seeds as number[];
    expect(seeds.map((s) => (s - seeds[0]! + 2 ** 32) % 2 ** 32)).toEqual([0, 1, 2, 3]);
    expect(await first.locator('.vary-row button', { hasText: 'V2' }).getAttribute('class')).toContain(
      'used',
    );

    // U2, then its Vary (Strong) and Upscale ×2.
    await first.locator('.upscale-row button', { hasText: 'U2' }).click();
    const image = page.locator('.image-card').first();
    await eventually(texts(image.locator('.vary-row button')), (v) =>
      expect(v).toEqual(['Vary (Subtle)', 'Vary (Strong)', 'Upscale ×2']),
    );
    await image.getByRole('button', { name: 'Vary (Strong)' }).click();
    const third = page.locator('.card.job').nth(2);
    await eventually(texts(third.locator('.who')), (v) =>
      expect(v.join(' ')).toContain('variations of image 2 (strong, strength 0.6)'),
    );
    await image.getByRole('button', { name: 'Upscale ×2' }).click();
    const fourth = page.locator('.card.job').nth(3);
    await eventually(texts(fourth.locator('.who')), (v) =>
      expect(v.join(' ')).toContain('image 2 upscaled ×2'),
    );
    await fourth.locator('img.grid').waitFor({ timeout: 45_000 });
    const size = await eventually(
      () =>
        fourth
          .locator('img.grid')
          .evaluate((img: HTMLImageElement) =>
            img.complete ? [img.naturalWidth, img.naturalHeight] : [0, 0],
          ),
      (v) => expect(v).toEqual([256, 256]),
    );
    expect(size).toEqual([256, 256]);
    await eventually(texts(fourth.locator('.vary-row button')), (v) => expect(v).toEqual(['V1']));

    // Its U1, then Upscale ×2 again: 512x512 is over MAX_PIXELS, said inline; nothing new is queued.
    await fourth.locator('.upscale-row button', { hasText: 'U1' }).click();
    const upImage = page.locator('.image-card').nth(1);
    await upImage.getByRole('button', { name: 'Upscale ×2' }).waitFor();
    await upImage.getByRole('button', { name: 'Upscale ×2' }).click();
    await eventually(texts(page.locator('.card.error')), (v) =>
      expect(v.join(' ')).toContain(
        'Upscale ×2 would make 512x512 (262144 pixels); the limit here is 65536 pixels',
      ),
    );
    expect(await page.locator('.card.job').count()).toBe(4);

    await page.screenshot({ path: `${ARTIFACTS}playground-vary-phone.png`, fullPage: true });
    // The refused ×2 is the one failed request, answered 400 on purpose.
    expect(problems).toEqual([]);
    await context.close();
  }, 180_000);
});
