import { mkdir } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { type Browser, chromium, type Locator, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from './app-helper.ts';

const ARTIFACTS = fileURLToPath(new URL('../artifacts/', import.meta.url));

/** Waits until an <img> matching `selector` has decoded a real picture. */
async function imageLoaded(
  page: Page,
  selector: string,
  timeout = 45_000,
): Promise<{ w: number; h: number }> {
  const handle = await page.waitForFunction(
    (sel) => {
      const img = document.querySelector<HTMLImageElement>(sel);
      return img?.complete && img.naturalWidth > 0 ? { w: img.naturalWidth, h: img.naturalHeight } : null;
    },
    selector,
    { timeout },
  );
  return (await handle.jsonValue()) as { w: number; h: number };
}

/** Polls `read` until `check` passes (playwright-core has no web-first assertions of its own). */
async function eventually<T>(
  read: () => Promise<T>,
  check: (value: T) => void,
  timeout = 30_000,
): Promise<T> {
  const deadline = Date.now() + timeout;
  for (;;) {
    const value = await read();
    try {
      check(value);
      return value;
    } catch (error) {
      if (Date.now() > deadline) throw error;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

const texts = (locator: Locator) => async () => (await locator.allTextContents()).map((s) => s.trim());
const text = (locator: Locator) => async () => ((await locator.first().textContent()) ?? '').trim();

describe('playground page in headless Chromium', () => {
  let t: TestApp;
  let browser: Browser;

  beforeAll(async () => {
    t = await startTestApp();
    browser = await chromium.launch({
      executablePath: '/usr/bin/chromium',
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--no-first-run',
      ],
    });
  });
  afterAll(async () => {
    await browser?.close();
    await t?.stop();
  });

  it('imagine → progress → grid with buttons → refine 2 → U1, with a screenshot', async () => {
    await mkdir(ARTIFACTS, { recursive: true });
    const page = await browser.newPage({ viewport: { width: 1180, height: 1400 }, deviceScaleFactor: 1 });
    const problems: string[] = [];
    page.on('pageerror', (error) => problems.push(`pageerror: ${error.message}`));
    page.on('console', (message) => {
      if (message.type() === 'error') problems.push(`console: ${message.text()}`);
    });

    await page.goto(t.url);
    await page.waitForSelector('#conn[data-state="live"]');
    await eventually(text(page.locator('#model')), (v) => expect(v.toLowerCase()).toContain('demo'));

    await page.fill('#prompt', '/imagine a lighthouse at dusk, oil painting --seed 5 --steps 40');
    await page.press('#prompt', 'Enter');
    await eventually(text(page.locator('.msg.user .bubble')), (v) =>
      expect(v).toBe('/imagine a lighthouse at dusk, oil painting --seed 5 --steps 40'),
    );
    const first = page.locator('.card.job').first();
    await eventually(texts(first.locator('.seed')), (v) => expect(v).toEqual(['15', '26', '37', '48']));

    // Live progress (from server-sent events) before the grid.
    await first.locator('.progress .label').waitFor({ timeout: 30_000 });
    expect(await text(first.locator('.progress .label'))()).toContain('Generating…');
    await page.screenshot({ path: `${ARTIFACTS}playground-progress.png` });
    expect(await first.getByRole('button', { name: 'Cancel' }).isVisible()).toBe(true);

    await first.locator('img.grid').waitFor({ timeout: 45_000 });
    const grid = await imageLoaded(page, '.card.job img.grid');
    expect(grid.w).toBeGreaterThan(0);
    expect(await texts(first.locator('.refine-row button'))()).toEqual(['1', '2', '3', '4', '🔄']);
    expect(await texts(first.locator('.upscale-row button'))()).toEqual(['U1', 'U2', 'U3', 'U4']);
    expect(await text(first.locator('.pill'))()).toBe('done');

    // Refine image 2: a second grid message, seeds all 6, prompts with the suffixes.
    await first.locator('.refine-row button', { hasText: '2' }).click();
    const second = page.locator('.card.job').nth(1);
    await eventually(text(second.locator('.who')), (v) => expect(v).toContain('refine of image 2'));
    await eventually(text(second.locator('.seed')), (v) => expect(v).toContain('6'));
    await second.locator('img.grid').waitFor({ timeout: 45_000 });
    await eventually(
      () =>
        second.locator('img.grid').evaluate((img: HTMLImageElement) => img.complete && img.naturalWidth > 0),
      (v) => expect(v).toBe(true),
    );
    expect(await texts(second.locator('.seed'))()).toEqual([
      '16 · highly realistic',
      '26 · artsy',
      '36 · trending',
      '46 · colorful',
    ]);
    expect(await first.locator('.refine-row button', { hasText: '2' }).getAttribute('class')).toContain(
      'used',
    );

    // U1: the first grid's image 1 at full size.
    await first.locator('.upscale-row button', { hasText: 'U1' }).click();
    const image = page.locator('.image-card').first();
    await eventually(text(image.locator('.title')), (v) => expect(v).toBe('Image 1 · seed 5'));
    const full = await imageLoaded(page, '.image-card img.full');
    expect(full.w).toBe(512);
    expect(full.h).toBe(512);

    // Inline errors: an unknown flag is explained, nothing is queued.
    await page.fill('#prompt', '/imagine a cat --colour red');
    await page.press('#prompt', 'Enter');
    await eventually(text(page.locator('.card.error')), (v) => expect(v).toContain('Unknown option'));
    expect(await page.locator('.card.job').count()).toBe(2);

    // The log scrolls inside the page: grow the viewport to the whole conversation for the picture.
    const height = await page.evaluate(
      () =>
        document.getElementById('log')!.scrollHeight +
        document.querySelector('header')!.offsetHeight +
        document.querySelector('footer')!.offsetHeight,
    );
    await page.setViewportSize({ width: 1180, height: Math.min(height + 8, 6000) });
    await page.waitForTimeout(400);
    await page.screenshot({ path: `${ARTIFACTS}playground.png` });

    // The history survives a reload (jobs are read back from the server).
    await page.reload();
    await page.locator('.card.job img.grid').nth(1).waitFor({ timeout: 20_000 });
    expect(await page.locator('.card.job').count()).toBe(2);
    expect(await page.locator('.image-card').count()).toBe(1);
    await page.emulateMedia({ colorScheme: 'dark' });
    await imageLoaded(page, '.image-card img.full');
    // Let the buttons' colour transitions finish.
    await page.waitForTimeout(400);
    await page.screenshot({ path: `${ARTIFACTS}playground-dark.png` });

    // The only failed request is the unknown-flag command, answered 400 on purpose.
    expect(problems).toEqual([
      'console: Failed to load resource: the server responded with a status of 400 (Bad Request)',
    ]);
    await page.close();
  });
});
