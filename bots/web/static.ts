import { readFile } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { methodNotAllowed, SECURITY_HEADERS } from '../ops/http.ts';

/** The playground's static page and assets: read once at start, served with a strict CSP. */

const STATIC_FILES = {
  '/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/index.html': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/app.js': { file: 'app.js', type: 'text/javascript; charset=utf-8' },
  '/vary.js': { file: 'vary.js', type: 'text/javascript; charset=utf-8' },
  '/style.css': { file: 'style.css', type: 'text/css; charset=utf-8' },
  '/history.js': { file: 'history.js', type: 'text/javascript; charset=utf-8' },
  '/settings.js': { file: 'settings.js', type: 'text/javascript; charset=utf-8' },
  '/panel.js': { file: 'panel.js', type: 'text/javascript; charset=utf-8' },
  '/panels.css': { file: 'panels.css', type: 'text/css; charset=utf-8' },
  '/favicon.svg': { file: 'favicon.svg', type: 'image/svg+xml' },
  '/image-prompt.js': { file: 'image-prompt.js', type: 'text/javascript; charset=utf-8' },
  '/image-prompt.css': { file: 'image-prompt.css', type: 'text/css; charset=utf-8' },
} as const satisfies Record<string, { file: string; type: string }>;

type StaticPath = keyof typeof STATIC_FILES;

const CSP =
  "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; connect-src 'self'; " +
  "frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/** Reads every static file once (at start), keyed by file name. */
export async function loadStaticFiles(): Promise<Map<string, Buffer>> {
  const staticDir = new URL('./static/', import.meta.url);
  const files = new Map<string, Buffer>();
  for (const { file } of Object.values(STATIC_FILES)) {
    if (!files.has(file)) files.set(file, await readFile(new URL(file, staticDir)));
  }
  return files;
}

export function isStaticPath(path: string): boolean {
  return path in STATIC_FILES;
}

/** The page itself needs an identity (its first load issues the cookie); assets do not. */
export function isAsset(path: string): boolean {
  return path in STATIC_FILES && path !== '/' && path !== '/index.html';
}

export function serveStatic(
  req: IncomingMessage,
  res: ServerResponse,
  path: string,
  files: ReadonlyMap<string, Buffer>,
): void {
  if (req.method !== 'GET' && req.method !== 'HEAD') throw methodNotAllowed(['GET', 'HEAD']);
  const entry = STATIC_FILES[path as StaticPath];
  const body = files.get(entry.file)!;
  res.writeHead(200, {
    ...SECURITY_HEADERS,
    'content-type': entry.type,
    'content-length': String(body.length),
    'cache-control': 'no-cache',
    'content-security-policy': CSP,
  });
  res.end(body);
}
