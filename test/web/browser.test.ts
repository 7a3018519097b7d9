import { mkdir } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FLAG_HELP } from '../../core/request.ts';
import { call, startTestApp, type TestApp } from './app-helper.ts';
import { eventually, launchChromium, newVisitor, openPlayground, text, texts } from './browser-helper.ts';

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

interface Box {
  readonly left: number;
  readonly right: number;
  readonly top: number;
  readonly bottom: number;
}

/** Where things are on the page, in CSS pixels, measured by the browser. */
interface Layout {
  readonly innerWidth: number;
  readonly innerHeight: number;
  /** Width of the whole document: more than innerWidth means the page scrolls sideways. */
  readonly docWidth: number;
  /** Same for the message log, which scrolls on its own. */
  readonly logOverflowX: number;
  readonly boxes: Record<string, Box | null>;
  /** Whether the element at the centre of each box is that element (or inside it): not covered, not off-screen. */
  readonly hit: Record<string, boolean>;
  /** Elements under the log or the header whose right edge is past the viewport. */
  readonly sticking: string[];
  readonly chip: { text: string; title: string; clipped: boolean; ellipsis: boolean };
}

async function measure(page: Page, selectors: Record<string, string>): Promise<Layout> {
  return page.evaluate((sel) => {
    const boxes: Record<string, Box | null> = {};
    const hit: Record<string, boolean> = {};
    for (const [name, selector] of Object.entries(sel)) {
      const el = document.querySelector(selector);
      if (el === null) {
        boxes[name] = null;
        hit[name] = false;
        continue;
      }
      const r = el.getBoundingClientRect();
      boxes[name] = { left: r.left, right: r.right, top: r.top, bottom: r.bottom };
      const at = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
      hit[name] = at !== null && (at === el || el.contains(at));
    }
    const log = document.getElementById('log')!;
    const sticking = Array.from(document.querySelectorAll('header *, #log *, footer *'))
      .filter((el) => {
        const r = el.getBoundingClientRect();
        return r.width > 0 && r.right > window.innerWidth + 0.5;
      })
      .map((el) => `${el.tagName.toLowerCase()}.${el.className}`);
    const chip = document.getElementById('model')!;
    return {
      innerWidth: window.innerWidth,
      innerHeight: window.innerHeight,
      docWidth: document.documentElement.scrollWidth,
      logOverflowX: log.scrollWidth - log.clientWidth,
      boxes,
      hit,
      sticking,
      chip: {
        text: chip.textContent ?? '',
        title: chip.title,
        clipped: chip.scrollWidth > chip.clientWidth,
        ellipsis: getComputedStyle(chip).textOverflow === 'ellipsis',
      },
    };
  }, selectors);
}

function expectInside(layout: Layout, name: string): void {
  const box = layout.boxes[name];
  expect(box, `${name} is on the page`).not.toBeNull();
  expect(box!.left, `${name} left edge`).toBeGreaterThanOrEqual(0);
  expect(box!.right, `${name} right edge`).toBeLessThanOrEqual(layout.innerWidth);
  expect(box!.top, `${name} top edge`).toBeGreaterThanOrEqual(0);
  expect(box!.bottom, `${name} bottom edge`).toBeLessThanOrEqual(layout.innerHeight);
  expect(layout.hit[name], `${name} is not covered`).toBe(true);
}

/**
 * For every `--flag` in the elements' rendered text: the lines (client rect tops) its characters
 * are drawn on. A flag split over two lines has two. Also how many lines each element takes.
 */
async function flagLines(
  page: Page,
  selector: string,
): Promise<{ flags: { flag: string; lines: number }[]; lines: number[] }> {
  return page.evaluate((sel) => {
    const flags: { flag: string; lines: number }[] = [];
    const lines: number[] = [];
    for (const el of Array.from(document.querySelectorAll(sel))) {
      const nodes: { node: Text; start: number }[] = [];
      let all = '';
      const walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
      for (let n = walker.nextNode(); n !== null; n = walker.nextNode()) {
        nodes.push({ node: n as Text, start: all.length });
        all += (n as Text).data;
      }
      const topOf = (index: number): number | null => {
        const at = nodes.findLast((x) => x.start <= index);
        if (at === undefined) return null;
        const range = document.createRange();
        range.setStart(at.node, index - at.start);
        range.setEnd(at.node, index - at.start + 1);
        const rect = Array.from(range.getClientRects()).find((r) => r.width > 0);
        return rect === undefined ? null : Math.round(rect.top);
      };
      const tops = new Set<number>();
      for (let i = 0; i < all.length; i++) {
        if (/\s/u.test(all[i]!)) continue;
        const top = topOf(i);
        if (top !== null) tops.add(top);
      }
      lines.push(tops.size);
      for (const match of all.matchAll(/--[A-Za-z][\w-]*/gu)) {
        const seen = new Set<number>();
        for (let i = match.index; i < match.index + match[0].length; i++) {
          const top = topOf(i);
          if (top !== null) seen.add(top);
        }
        flags.push({ flag: match[0], lines: seen.size });
      }
    }
    return { flags, lines };
  }, selector);
}

/** Scroll state of the message log, and where `selector`'s last match is relative to its visible part. */
async function logScroll(page: Page, selector: string) {
  return page.evaluate((sel) => {
    const log = document.getElementById('log')!;
    const view = log.getBoundingClientRect();
    const all = document.querySelectorAll(sel);
    const el = all[all.length - 1];
    const r = el?.getBoundingClientRect();
    return {
      top: log.scrollTop,
      fromBottom: log.scrollHeight - log.scrollTop - log.clientHeight,
      scrollable: log.scrollHeight > log.clientHeight + 50,
      /** The element's bottom edge is within the log's visible area. */
      bottomInView: r !== undefined && r.bottom <= view.bottom + 1 && r.bottom > view.top,
    };
  }, selector);
}

/** Resolves after two frames: layout, resize observers and scroll handlers of the last change have run. */
const frames = (page: Page) =>
  page.evaluate(
    () => new Promise<void>((resolve) => requestAnimationFrame(() => requestAnimationFrame(() => resolve()))),
  );

/** Waits until the last <img> matching `selector` has decoded a picture. */
const lastLoaded = (page: Page, selector: string) =>
  page.waitForFunction(
    (sel) => {
      const all = document.querySelectorAll<HTMLImageElement>(sel);
      const img = all[all.length - 1];
      return img?.complete && img.naturalWidth > 0;
    },
    selector,
    { timeout: 45_000 },
  );

const gridsLoaded = (page: Page) =>
  page.evaluate(() =>
    Array.from(document.querySelectorAll<HTMLImageElement>('.card img.grid, .card img.full')).every(
      (img) => img.complete && img.naturalWidth > 0,
    ),
  );

describe('playground page in headless Chromium', () => {
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

  it('imagine → progress → grid with buttons → refine 2 → U1, with a screenshot', async () => {
    await mkdir(ARTIFACTS, { recursive: true });
    const page = await browser.newPage({ viewport: { width: 1180, height: 1400 }, deviceScaleFactor: 1 });
    const problems: string[] = [];
    page.on('pageerror', (error) => problems.push(`pageerror: ${error.message}`));
    page.on('console', (message) => {
      if (message.type() === 'error') problems.push(`console: ${message.text()}`);
    });

    await openPlayground(page, t.url);
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
    expect(await texts(first.locator('.refine-row button'))()).toEqual(['1', '2', '3', '4', 'Reroll']);
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

  /** A fresh visitor (own cookie, empty history) with a window of this size. */
  async function visit(viewport: {
    width: number;
    height: number;
  }): Promise<{ context: BrowserContext; page: Page }> {
    const { context, page } = await newVisitor(browser, viewport);
    await openPlayground(page, t.url);
    await page.waitForSelector('#model:not([hidden])');
    return { context, page };
  }

  async function send(page: Page, command: string): Promise<void> {
    await page.fill('#prompt', command);
    await page.press('#prompt', 'Enter');
  }

  const VIEWPORTS = [
    { name: 'phone-360', width: 360, height: 740 },
    { name: 'phone-390', width: 390, height: 844 },
    { name: 'desktop-1280', width: 1280, height: 800 },
  ];

  it.each(VIEWPORTS)(
    'fits a $width×$height window: nothing sideways, heading whole, Send and Clear on screen, flags unbroken',
    async ({ name, width, height }) => {
      await mkdir(ARTIFACTS, { recursive: true });
      const model = (await call<{ model: { name: string } }>(`${t.url}/api/info`)).body.model.name;
      const { context, page } = await visit({ width, height });
      try {
        const controls = {
          heading: '#welcome h1',
          brand: '.brand .name',
          model: '#model',
          send: '#send',
          clear: '#clear',
          input: '#prompt',
        };
        const first = await measure(page, controls);
        expect(first.docWidth).toBeLessThanOrEqual(width);
        expect(first.sticking).toEqual([]);
        for (const key of Object.keys(controls)) expectInside(first, key);
        // The model's long name: shortened with an ellipsis when it does not fit, whole on hover.
        expect(first.chip.text).toBe(model);
        expect(first.chip.title).toContain(model);
        if (first.chip.clipped) expect(first.chip.ellipsis).toBe(true);
        await page.screenshot({ path: `${ARTIFACTS}layout-${name}-welcome.png` });

        // A long command with an unknown flag: the error lists every flag and wraps over many lines.
        const command =
          '/imagine a lighthouse on a cliff at dusk, crashing waves, oil painting, warm light --seed 5 --steps 4 --colour red';
        await send(page, command);
        const error = page.locator('.card.error .error-text');
        await error.waitFor();
        expect(await text(error)()).toBe(
          `Unknown option --colour. Allowed options: ${FLAG_HELP}. To use it as prompt text, put it in quotes.`,
        );
        expect(await text(page.locator('.msg.user .bubble'))()).toBe(command);
        for (const selector of ['.card.error .error-text', '.msg.user .bubble']) {
          const { flags, lines } = await flagLines(page, selector);
          expect(flags.map((f) => f.flag)).toEqual(
            expect.arrayContaining(
              selector.includes('error') ? ['--colour', '--seed', '--size'] : ['--colour'],
            ),
          );
          // Wrapped text, or there is nothing to check.
          expect(lines[0]).toBeGreaterThanOrEqual(width < 500 ? 3 : 2);
          expect(flags.filter((f) => f.lines !== 1)).toEqual([]);
        }
        await page.screenshot({ path: `${ARTIFACTS}layout-${name}-error.png` });

        await send(page, '/imagine a red fox in the snow --seed 5');
        await page.locator('.card.job img.grid').waitFor({ timeout: 45_000 });
        await imageLoaded(page, '.card.job img.grid');
        await frames(page);
        const after = await measure(page, { ...controls, reroll: '.card.job .refine-row .btn.primary' });
        expect(after.docWidth).toBeLessThanOrEqual(width);
        expect(after.logOverflowX).toBeLessThanOrEqual(0);
        expect(after.sticking).toEqual([]);
        for (const key of ['brand', 'model', 'send', 'clear', 'input', 'reroll']) expectInside(after, key);
        await page.screenshot({ path: `${ARTIFACTS}layout-${name}-grid.png` });
      } finally {
        await context.close();
      }
    },
  );

  it('the reroll button is named in words; the demo note says what it is once', async () => {
    const { context, page } = await visit({ width: 1000, height: 900 });
    try {
      // Markup-like text in the prompt is shown as typed, flags included.
      const command = '/imagine a red fox <b>in</b> the **snow** --seed 7';
      await send(page, command);
      const card = page.locator('.card.job').first();
      await card.locator('img.grid').waitFor({ timeout: 45_000 });
      expect(await text(page.locator('.msg.user .bubble'))()).toBe(command);
      expect(await page.locator('.msg.user .bubble b').count()).toBe(0);
      expect(await text(card.locator('.title'))()).toBe('a red fox <b>in</b> the **snow**');
      const reroll = card.getByRole('button', { name: 'Reroll', exact: true });
      expect(await reroll.count()).toBe(1);
      // The name is the word, shown as text; the icon beside it is drawn (no emoji font needed) and
      // hidden from screen readers.
      expect(await reroll.textContent()).toBe('Reroll');
      expect(await reroll.locator('svg[aria-hidden="true"]').count()).toBe(1);
      expect((await reroll.locator('svg').boundingBox())?.width).toBeGreaterThan(8);
      expect(await texts(card.locator('.notes li'))()).toEqual([
        'Made with the built-in demo model: synthetic images, not Stable Diffusion.',
      ]);
    } finally {
      await context.close();
    }
  });

  it('follows new results at the bottom, leaves a reader in the history alone, and opens at the latest', async () => {
    const { context, page } = await visit({ width: 390, height: 844 });
    try {
      const atBottom = async (selector: string) => {
        await frames(page);
        return logScroll(page, selector);
      };
      const expectFollowing = (selector: string) =>
        eventually(
          () => atBottom(selector),
          (v) => {
            expect(v.fromBottom).toBeLessThanOrEqual(2);
            expect(v.bottomInView).toBe(true);
          },
        );
      const last = '.card.job >> nth=-1';
      const waitGrid = async (count: number) => {
        await eventually(
          () => page.locator('.card.job img.grid').count(),
          (v) => expect(v).toBe(count),
          45_000,
        );
        await eventually(
          () => gridsLoaded(page),
          (v) => expect(v).toBe(true),
        );
      };

      await send(page, '/imagine a red fox in the snow --seed 5');
      await waitGrid(1);
      await expectFollowing('.card.job');

      // Each press is on the newest card, with the reader at the bottom: the result comes into view.
      await page.locator(last).getByRole('button', { name: 'Reroll', exact: true }).click();
      await waitGrid(2);
      expect((await logScroll(page, '.card.job')).scrollable).toBe(true);
      await expectFollowing('.card.job');

      await page.locator(last).locator('.refine-row button', { hasText: '2' }).click();
      await waitGrid(3);
      await expectFollowing('.card.job');

      await page.locator(last).locator('.upscale-row button', { hasText: 'U1' }).click();
      await eventually(
        () => page.locator('.image-card img.full').count(),
        (v) => expect(v).toBe(1),
      );
      await imageLoaded(page, '.image-card img.full');
      await expectFollowing('.image-card');

      // A reader who scrolled up stays where they are; a button offers the way down.
      await page.evaluate(() => {
        document.getElementById('log')!.scrollTop = 0;
      });
      await frames(page);
      expect((await logScroll(page, '.msg')).top).toBe(0);
      await page
        .locator('.card.job')
        .first()
        .locator('.upscale-row button', { hasText: 'U2' })
        .evaluate((b: HTMLButtonElement) => b.click());
      await eventually(
        () => page.locator('.image-card').count(),
        (v) => expect(v).toBe(2),
      );
      await frames(page);
      await frames(page);
      expect((await logScroll(page, '.msg')).top).toBe(0);
      const jump = page.getByRole('button', { name: 'New result ↓' });
      expect(await jump.isVisible()).toBe(true);
      await page.screenshot({ path: `${ARTIFACTS}scroll-jump.png` });
      await jump.click();
      await lastLoaded(page, '.image-card img.full');
      await expectFollowing('.image-card');
      expect(await jump.isVisible()).toBe(false);

      // Sending from the composer always goes to the bottom, where the reply will be.
      await page.evaluate(() => {
        document.getElementById('log')!.scrollTop = 0;
      });
      await send(page, '/imagine a cat --colour red');
      await expectFollowing('.card.error');

      // After a reload the page opens at the latest message, once its pictures have loaded too.
      await page.reload();
      await page.waitForSelector('#conn[data-state="live"]');
      await eventually(
        () => page.locator('.msg').count(),
        (v) => expect(v).toBe(8),
      );
      await expectFollowing('.msg');
      await lastLoaded(page, '.image-card img.full');
      await expectFollowing('.msg');
      await page.screenshot({ path: `${ARTIFACTS}scroll-reload.png` });
    } finally {
      await context.close();
    }
  });
});
