import { readFileSync } from 'node:fs';
import path from 'node:path';
import { type Browser, chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from './app-helper.ts';

/**
 * A picture whose file name is longer than the 200 characters `init_image_name` takes (filesystems
 * allow 255): the page shortens the name it sends, keeping the extension, so the image prompt is
 * queued instead of failing on a field the user never typed. Headless Chromium, phone size.
 */

const PICTURE = readFileSync(path.join(import.meta.dirname, '../fixtures/img2img-cases/init-d.png'));

describe('playground image prompt with a long file name (headless Chromium)', () => {
  let t: TestApp;
  let browser: Browser;

  beforeAll(async () => {
    t = await startTestApp();
    browser = await chromium.launch({
      executablePath: '/usr/bin/chromium',
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run'],
    });
  });
  afterAll(async () => {
    await browser?.close();
    await t?.stop();
  });

  it('sends a shortened name that keeps the extension, and the job is queued', async () => {
    const context = await browser.newContext({ viewport: { width: 360, height: 740 }, deviceScaleFactor: 1 });
    const page = await context.newPage();
    await page.goto(t.url);
    await page.waitForSelector('#conn[data-state="live"]');
    // 250 characters with an astral character at the cut, which must not be split in half.
    const name = `${'a'.repeat(194)}🌊${'b'.repeat(50)}.png`;
    expect(name.length).toBeGreaterThan(200);
    await page.setInputFiles('#image-file', { name, mimeType: 'image/png', buffer: PICTURE });
    await page.waitForSelector('#image-prompt:not([hidden])');
    const [response] = await Promise.all([
      page.waitForResponse((r) => r.url().endsWith('/api/imagine') && r.request().method() === 'POST'),
      (async () => {
        await page.fill('#prompt', 'a harbour --seed 3');
        await page.press('#prompt', 'Enter');
      })(),
    ]);
    const sent = JSON.parse(response.request().postData() ?? '{}') as { init_image_name?: string };
    expect(response.status(), await response.text()).toBe(202);
    expect(sent.init_image_name).toBe(`${'a'.repeat(194)}….png`);
    const { id } = (await response.json()) as { id: string };
    const job = (await page.evaluate(async (jobId) => (await fetch(`/api/jobs/${jobId}`)).json(), id)) as {
      init: { name?: string };
    };
    expect(job.init.name).toBe(sent.init_image_name);
    await context.close();
  }, 60_000);
});
