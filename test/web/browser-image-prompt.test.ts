import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from './app-helper.ts';
import { launchChromium, newVisitor, openPlayground } from './browser-helper.ts';

/**
 * The playground's image prompt in headless Chromium: upload (file input) and paste, the preview, the
 * strength slider, remove; the job's record names the picture. At phone size (390×844).
 */

const FIXTURE = path.join(import.meta.dirname, '../fixtures/img2img-cases/init-d.png');
const PICTURE = readFileSync(FIXTURE);
const SHA256 = createHash('sha256').update(PICTURE).digest('hex');

interface JobJson {
  status: string;
  settings: { width: number; height: number };
  strength: number | null;
  init: Record<string, unknown> | null;
}

describe('playground image prompts in headless Chromium', () => {
  let t: TestApp;
  let browser: Browser;

  beforeAll(async () => {
    t = await startTestApp();
    browser = await launchChromium();
  });
  afterAll(async () => {
    await browser?.close();
    await t?.stop();
  });

  async function phone(): Promise<Page> {
    const { page } = await newVisitor(browser, { width: 390, height: 844 });
    await openPlayground(page, t.url);
    return page;
  }

  /** Sends the command, and returns the submitted body and the finished job. */
  async function sendAndWait(
    page: Page,
    command: string,
  ): Promise<{ body: Record<string, unknown>; job: JobJson }> {
    const [response] = await Promise.all([
      page.waitForResponse((r) => r.url().endsWith('/api/imagine') && r.request().method() === 'POST'),
      (async () => {
        await page.fill('#prompt', command);
        await page.press('#prompt', 'Enter');
      })(),
    ]);
    expect(response.status()).toBe(202);
    const body = JSON.parse(response.request().postData() ?? '{}') as Record<string, unknown>;
    const { id } = (await response.json()) as { id: string };
    const deadline = Date.now() + 45_000;
    for (;;) {
      const job = await page.evaluate(async (jobId) => (await fetch(`/api/jobs/${jobId}`)).json(), id);
      if ((job as JobJson).status === 'done') return { body, job: job as JobJson };
      if (Date.now() > deadline) throw new Error(`job ${id} not done: ${JSON.stringify(job)}`);
      await page.waitForTimeout(150);
    }
  }

  it('upload: preview, strength slider, remove; the job uses the picture and its record names it', async () => {
    const page = await phone();
    const problems: string[] = [];
    page.on('pageerror', (error) => problems.push(error.message));
    try {
      expect(await page.isVisible('#image-prompt')).toBe(false);
      await page.setInputFiles('#image-file', FIXTURE);
      await page.waitForSelector('#image-prompt:not([hidden])');
      expect(await page.textContent('.image-name')).toBe(
        `init-d.png · ${Math.round(PICTURE.length / 1024)} KB`,
      );
      const preview = await page.waitForFunction(() => {
        const img = document.querySelector<HTMLImageElement>('.image-thumb');
        return img?.complete && img.naturalWidth > 0 ? [img.naturalWidth, img.naturalHeight] : null;
      });
      expect(await preview.jsonValue()).toEqual([96, 64]);

      // Everything is on a phone's screen, nothing sideways.
      const layout = await page.evaluate(() => {
        const inside = (selector: string) => {
          const r = document.querySelector(selector)!.getBoundingClientRect();
          return (
            r.width > 0 &&
            r.left >= 0 &&
            r.right <= window.innerWidth &&
            r.top >= 0 &&
            r.bottom <= window.innerHeight
          );
        };
        return {
          sideways: document.documentElement.scrollWidth > window.innerWidth,
          visible: [
            '#image-attach',
            '.image-thumb',
            '#image-strength',
            '#image-remove',
            '#send',
            '#prompt',
          ].map((s) => [s, inside(s)]),
        };
      });
      expect(layout.sideways).toBe(false);
      for (const [selector, inside] of layout.visible) expect(inside, String(selector)).toBe(true);
      await page.screenshot({ path: path.join(import.meta.dirname, '../artifacts/image-prompt-390.png') });

      // Remove, then choose again with another strength.
      await page.click('#image-remove');
      expect(await page.isVisible('#image-prompt')).toBe(false);
      await page.setInputFiles('#image-file', FIXTURE);
      await page.fill('#image-strength', '0.35');
      expect(await page.textContent('.image-strength span')).toBe('strength 0.35');

      const { body, job } = await sendAndWait(page, '/imagine a harbour at night --seed 4 --steps 4');
      expect(Buffer.from(String(body.init_image), 'base64').equals(PICTURE)).toBe(true);
      expect(body.strength).toBe(0.35);
      expect(job.strength).toBe(0.35);
      expect(job.init).toMatchObject({
        from: 'upload',
        sha256: SHA256,
        source: 'upload',
        name: 'init-d.png',
      });
      // Used once: the composer is clear for the next command.
      expect(await page.isVisible('#image-prompt')).toBe(false);
      expect(problems).toEqual([]);
    } finally {
      await page.context().close();
    }
  });

  it('paste: a clipboard picture becomes the image prompt; --strength typed wins over the slider', async () => {
    const page = await phone();
    try {
      await page.evaluate((b64) => {
        const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
        const data = new DataTransfer();
        data.items.add(new File([bytes], 'image.png', { type: 'image/png' }));
        document
          .getElementById('prompt')!
          .dispatchEvent(
            new ClipboardEvent('paste', { clipboardData: data, bubbles: true, cancelable: true }),
          );
      }, PICTURE.toString('base64'));
      await page.waitForSelector('#image-prompt:not([hidden])');
      expect(await page.textContent('.image-name')).toContain('pasted image');
      const { body, job } = await sendAndWait(page, 'a harbour --seed 9 --steps 2 --strength 0.8');
      expect('strength' in body).toBe(false);
      expect(job.strength).toBe(0.8);
      expect(job.init).toMatchObject({ sha256: SHA256, name: 'pasted image' });
    } finally {
      await page.context().close();
    }
  });

  it('refuses a file that is not a PNG, JPEG or WebP before sending anything', async () => {
    const page = await phone();
    try {
      await page.setInputFiles('#image-file', {
        name: 'notes.gif',
        mimeType: 'image/gif',
        buffer: Buffer.from('GIF89a\x01\x00\x01\x00'),
      });
      await page.waitForSelector('#image-problem:not([hidden])');
      expect(await page.textContent('#image-problem')).toBe('notes.gif is not a PNG, JPEG or WebP picture.');
      expect(await page.isVisible('#image-prompt')).toBe(false);
    } finally {
      await page.context().close();
    }
  });
});
