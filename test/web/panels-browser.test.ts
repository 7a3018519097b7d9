import { mkdir } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, startTestApp, type TestApp } from './app-helper.ts';
import {
  launchChromium,
  newVisitor,
  openPlayground,
  eventually as poll,
  text,
  texts,
} from './browser-helper.ts';

const ARTIFACTS = fileURLToPath(new URL('../artifacts/', import.meta.url));

// Checks here wait on demo-model jobs queued one behind another: 45 s, not the helper's 30 s.
const eventually = <T>(read: () => Promise<T>, check: (value: T) => void): Promise<T> =>
  poll(read, check, 45_000);

/** The playground's Settings and History panels (settings.js, history.js) in headless Chromium. */
describe('playground Settings and History panels in headless Chromium', () => {
  let t: TestApp;
  let browser: Browser;

  beforeAll(async () => {
    t = await startTestApp({ PER_USER_LIMIT: '10' });
    browser = await launchChromium();
  });
  afterAll(async () => {
    await browser?.close();
    await t?.stop();
  });

  async function visit(viewport: { width: number; height: number }): Promise<{
    context: BrowserContext;
    page: Page;
    problems: string[];
  }> {
    const { context, page } = await newVisitor(browser, viewport);
    const problems: string[] = [];
    page.on('pageerror', (error) => problems.push(`pageerror: ${error.message}`));
    page.on('dialog', (dialog) => {
      problems.push(`dialog: ${dialog.message()}`);
      void dialog.dismiss();
    });
    await openPlayground(page, t.url);
    return { context, page, problems };
  }

  async function send(page: Page, command: string): Promise<void> {
    await page.fill('#prompt', command);
    await page.press('#prompt', 'Enter');
  }

  async function openSettings(page: Page): Promise<void> {
    await page.click('#settings-open');
    await page.locator('#settings-form .field[data-field="suffixes"] .suffix-input').first().waitFor();
  }

  it('the settings panel changes the suffixes, a refine uses them, and a bad value shows its field’s error', async () => {
    const { context, page, problems } = await visit({ width: 1100, height: 900 });
    try {
      await openSettings(page);
      const rows = page.locator('#setting-suffixes .suffix-row');
      // Shown: the suffixes that apply now (the environment's four).
      expect(
        await rows.locator('input').evaluateAll((els) => els.map((e) => (e as HTMLInputElement).value)),
      ).toEqual([', highly realistic', ', artsy', ', trending', ', colorful']);
      await rows.nth(3).getByRole('button', { name: 'Remove this suffix' }).click();
      await rows.nth(2).getByRole('button', { name: 'Remove this suffix' }).click();
      await rows.nth(0).locator('input').fill(', oil painting');
      await rows.nth(1).locator('input').fill(', <b>pencil</b> sketch');
      await page.click('#settings-form button[type="submit"]');
      await eventually(text(page.locator('#settings-status')), (v) => expect(v).toContain('Saved'));
      const saved = await call<{ settings: { suffixes: string[] } }>(`${t.url}/api/settings`);
      expect(saved.body.settings.suffixes).toEqual([', oil painting', ', <b>pencil</b> sketch']);
      // Saving sent only the suffixes: nothing else became an override.
      expect(Object.keys(saved.body.settings)).toEqual(['suffixes']);

      // A bad value: the server's message appears under that field, and nothing is saved.
      await page.fill('#setting-steps', '0');
      await page.click('#settings-form button[type="submit"]');
      const stepsError = page.locator('#setting-steps-error');
      await eventually(text(stepsError), (v) => expect(v).toBe('Setting "steps" must be at least 1.'));
      expect(await stepsError.isVisible()).toBe(true);
      expect(await page.getAttribute('#setting-steps', 'aria-invalid')).toBe('true');
      expect(await page.locator('#setting-suffixes-error').isVisible()).toBe(false);
      await page.fill('#setting-dailyQuota', 'lots');
      await page.fill('#setting-steps', '');
      await page.click('#settings-form button[type="submit"]');
      await eventually(text(page.locator('#setting-dailyQuota-error')), (v) =>
        expect(v).toContain('"dailyQuota" must be a whole number'),
      );
      expect(await page.locator('#setting-steps-error').isVisible()).toBe(false);
      expect(Object.keys((await call<{ settings: object }>(`${t.url}/api/settings`)).body.settings)).toEqual([
        'suffixes',
      ]);
      await page.fill('#setting-dailyQuota', '');
      await page.click('[data-close="settings-panel"]');
      expect(await page.locator('#settings-panel').isHidden()).toBe(true);

      // The next refine uses the new suffixes: one image per suffix, the text shown literally.
      await send(page, '/imagine a castle --seed 40');
      const first = page.locator('.card.job').first();
      await first.locator('img.grid').waitFor({ timeout: 45_000 });
      await first.locator('.refine-row button', { hasText: '2' }).click();
      const second = page.locator('.card.job').nth(1);
      await second.locator('img.grid').waitFor({ timeout: 45_000 });
      expect(await texts(second.locator('.seed'))()).toEqual([
        '141 · oil painting',
        '241 · <b>pencil</b> sketch',
      ]);
      expect(await second.locator('b', { hasText: 'pencil' }).count()).toBe(0);
      expect(problems).toEqual([]);
    } finally {
      await context.close();
    }
  });

  it('the history panel lists only this browser’s grids, newest first, and opens one with working buttons', async () => {
    const other = await visit({ width: 1100, height: 900 });
    await send(other.page, '/imagine somebody else --seed 9');
    await other.page.locator('.card.job').first().waitFor();

    const { context, page, problems } = await visit({ width: 1100, height: 900 });
    try {
      const hostile = '<img src=x onerror=alert(1)> a fox';
      await send(page, `/imagine ${hostile} --seed 3`);
      await page.locator('.card.job img.grid').first().waitFor({ timeout: 45_000 });
      await send(page, '/imagine a lighthouse --seed 4');
      await page.locator('.card.job').nth(1).waitFor();

      // Cleared from the page; the server still has them.
      await page.click('#clear');
      expect(await page.locator('.card.job').count()).toBe(0);

      await page.click('#history-open');
      const entries = page.locator('#history-list .history-entry');
      await eventually(texts(entries.locator('.history-prompt')), (v) =>
        expect(v).toEqual(['a lighthouse', hostile]),
      );
      expect(await entries.locator('img').count()).toBe(0);
      expect(await text(entries.nth(1).locator('.pill'))()).toBe('done');
      await page.screenshot({ path: `${ARTIFACTS}panels-history.png` });

      await entries.nth(1).getByRole('button', { name: 'Open with buttons' }).click();
      expect(await page.locator('#history-panel').isHidden()).toBe(true);
      const card = page.locator('.card.job').first();
      await card.locator('img.grid').waitFor({ timeout: 45_000 });
      expect(await texts(card.locator('.refine-row button'))()).toEqual(['1', '2', '3', '4', 'Reroll']);
      await card.locator('.refine-row button', { hasText: '1' }).click();
      const refined = page.locator('.card.job').nth(1);
      await eventually(text(refined.locator('.who')), (v) => expect(v).toContain('refine of image 1'));
      await refined.locator('img.grid').waitFor({ timeout: 45_000 });

      // The refine is now the newest entry.
      await page.click('#history-open');
      await eventually(texts(entries.locator('.history-meta')), (v) =>
        expect(v[0]).toContain('refine of image 1'),
      );
      expect(await entries.count()).toBe(3);
      expect(problems).toEqual([]);
    } finally {
      await context.close();
      await other.context.close();
    }
  });

  it('both panels fit a 390×844 phone: nothing sideways, every field reachable', async () => {
    await mkdir(ARTIFACTS, { recursive: true });
    const { context, page, problems } = await visit({ width: 390, height: 844 });
    try {
      await send(page, `/imagine ${'unbreakable'.repeat(12)} --seed 8`);
      await page.locator('.card.job').first().waitFor();
      const overflow = () =>
        page.evaluate(() => {
          const panel = document.querySelector('.panel:not([hidden])');
          return {
            doc: document.documentElement.scrollWidth,
            inner: window.innerWidth,
            panel: panel === null ? null : panel.scrollWidth - panel.clientWidth,
            wide: Array.from(document.querySelectorAll('.panel:not([hidden]) *'))
              .filter((el) => el.getBoundingClientRect().right > window.innerWidth + 0.5)
              .map((el) => el.id || el.className || el.tagName),
          };
        });
      for (const [opener, ready] of [
        ['#history-open', '#history-list .history-entry'],
        ['#settings-open', '#setting-admins'],
      ] as const) {
        await page.click(opener);
        await page.locator(ready).first().waitFor();
        const measured = await overflow();
        expect(measured.doc).toBeLessThanOrEqual(390);
        expect(measured.panel).toBe(0);
        expect(measured.wide).toEqual([]);
        await page.screenshot({ path: `${ARTIFACTS}panels-${opener.slice(1)}-390.png`, fullPage: false });
        // Full width on a phone: it covers the header, so it is closed with its own button.
        if (opener === '#history-open') await page.click('[data-close="history-panel"]');
      }
      // The last field and Save can be scrolled to and pressed.
      await page.locator('#settings-form button[type="submit"]').scrollIntoViewIfNeeded();
      expect(await page.locator('#settings-form button[type="submit"]').isVisible()).toBe(true);
      // Scrolled down to Save, the panel's Close button is still on screen (its head stays put).
      const close = await page.locator('[data-close="settings-panel"]').boundingBox();
      expect(close).not.toBeNull();
      expect(close!.y).toBeGreaterThanOrEqual(0);
      expect(close!.y + close!.height).toBeLessThanOrEqual(844);
      await page.click('[data-close="settings-panel"]');
      expect(await page.locator('#settings-panel').isHidden()).toBe(true);
      expect(problems).toEqual([]);
    } finally {
      await context.close();
    }
  });
});
