import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TINY_SD, TINY_SD2 } from '../models/tiny-sd.ts';
import { startTestApp, type TestApp } from './app-helper.ts';
import { launchChromium, openPlayground } from './browser-helper.ts';

/** The playground page with two models served: the header names them, each job says which one it ran on. */
describe('playground page with two models (headless Chromium, tiny-sd + tiny-sd2)', () => {
  let t: TestApp;
  let browser: Browser;

  beforeAll(async () => {
    t = await startTestApp({
      MODELS: `sd1=${TINY_SD},sd2=${TINY_SD2}`,
      DEFAULT_WIDTH: '64',
      DEFAULT_HEIGHT: '64',
      DEFAULT_STEPS: '2',
      DEFAULT_SAMPLER: 'euler',
    });
    browser = await launchChromium();
  });
  afterAll(async () => {
    await browser?.close();
    await t?.stop();
  });

  it('the header lists the models; a --model job’s card says its model', async () => {
    const page = await browser.newPage({ viewport: { width: 1000, height: 900 } });
    const problems: string[] = [];
    page.on('pageerror', (error) => problems.push(error.message));
    await openPlayground(page, t.url);
    const chip = page.locator('#model');
    await chip.waitFor({ state: 'visible' });
    expect((await chip.textContent())?.trim()).toBe('models: sd1, sd2');
    expect(await chip.getAttribute('title')).toContain('Pick one with --model NAME');

    await page.fill('#prompt', '/imagine a red fox --model sd2 --seed 4');
    await page.press('#prompt', 'Enter');
    await page.locator('.card.job img.grid').first().waitFor({ timeout: 45_000 });
    const chips = (await page.locator('.card.job .settings .chip').allTextContents()).map((s) => s.trim());
    expect(chips[0]).toBe('model sd2');
    expect(problems).toEqual([]);
    await page.close();
  });
});
