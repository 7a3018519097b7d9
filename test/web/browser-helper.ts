import { type Browser, type BrowserContext, chromium, type Locator, type Page } from 'playwright-core';

/** The system's Chromium, headless, with nothing in the background that reaches for the network. */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({
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
}

/** A fresh visitor (own context, so own cookie) with a window of this size, at 1 device pixel per CSS pixel. */
export async function newVisitor(
  browser: Browser,
  viewport: { width: number; height: number },
): Promise<{ context: BrowserContext; page: Page }> {
  const context = await browser.newContext({ viewport, deviceScaleFactor: 1 });
  const page = await context.newPage();
  return { context, page };
}

/** Opens the playground and waits until its live connection is up. */
export async function openPlayground(page: Page, url: string): Promise<void> {
  await page.goto(url);
  await page.waitForSelector('#conn[data-state="live"]');
}

/** Polls `read` until `check` passes (playwright-core has no web-first assertions of its own). */
export async function eventually<T>(
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

/** Reads every match's trimmed text. */
export const texts = (locator: Locator) => async () => (await locator.allTextContents()).map((s) => s.trim());
/** Reads the first match's trimmed text ('' when it has none). */
export const text = (locator: Locator) => async () => ((await locator.first().textContent()) ?? '').trim();
