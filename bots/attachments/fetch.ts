import { ErrorCode, UserError } from '../../core/errors.ts';
import { imageTooLarge, MAX_INIT_IMAGE_BYTES } from '../../core/image-prompt.ts';

/**
 * Downloads a chat platform's file, and only that: the URL (and every redirect) must be on one of the
 * platform's own file origins, the body is read only up to the size limit (Content-Length is a hint, not
 * trusted), and the whole download has a deadline. Headers such as Slack's bearer token go only to those
 * origins, since a redirect to anywhere else is refused before it is followed. The bytes stay in memory.
 */

export interface FilePolicy {
  /** Origins files may come from, e.g. `https://cdn.discordapp.com` (tests: the fake's `http://127.0.0.1:port`). */
  readonly origins: readonly string[];
  /** Sent with each request (all to allowed origins): Slack's `Authorization: Bearer`. Never logged. */
  readonly headers?: Readonly<Record<string, string>>;
  /** @defaultValue MAX_INIT_IMAGE_BYTES (20 MiB) */
  readonly maxBytes?: number;
  /** Whole download, redirects included. @defaultValue 20000 */
  readonly timeoutMs?: number;
  /** @defaultValue 3 */
  readonly maxRedirects?: number;
}

export const FILE_FETCH_DEFAULTS = { timeoutMs: 20_000, maxRedirects: 3 } as const;

/** The platforms' own file hosts, over https only. */
export const DISCORD_FILE_ORIGINS = ['https://cdn.discordapp.com', 'https://media.discordapp.net'] as const;
export const SLACK_FILE_ORIGINS = ['https://files.slack.com'] as const;

/** `scheme://host[:port]` of a URL the way `URL.origin` writes it (default ports dropped, lowercase). */
export function originOf(url: string): string | undefined {
  try {
    return new URL(url).origin;
  } catch {
    return undefined;
  }
}

/** Whether a URL is on one of the allowed origins (exact origin match: no suffix or subdomain tricks). */
export function isAllowedUrl(url: string, origins: readonly string[]): boolean {
  const origin = originOf(url);
  if (origin === undefined || origin === 'null') return false;
  return origins.some((o) => originOf(o) === origin);
}

function refusedHost(what: string, url: string): UserError {
  const host = originOf(url) ?? 'an invalid address';
  return new UserError(
    ErrorCode.InvalidRequest,
    `${what} is not on the chat platform's own file host (${host}); only files uploaded to the chat are used.`,
  );
}

/** Downloads `url` under the policy. `what` names the file in refusals ("The attachment"). */
export async function fetchFile(url: string, policy: FilePolicy, what: string): Promise<Uint8Array> {
  const maxBytes = policy.maxBytes ?? MAX_INIT_IMAGE_BYTES;
  const maxRedirects = policy.maxRedirects ?? FILE_FETCH_DEFAULTS.maxRedirects;
  const signal = AbortSignal.timeout(policy.timeoutMs ?? FILE_FETCH_DEFAULTS.timeoutMs);
  let current = url;
  for (let hop = 0; ; hop++) {
    if (!isAllowedUrl(current, policy.origins)) throw refusedHost(what, current);
    let response: Response;
    try {
      response = await fetch(current, {
        redirect: 'manual',
        signal,
        ...(policy.headers === undefined ? {} : { headers: { ...policy.headers } }),
      });
    } catch (error) {
      throw downloadFailed(what, error);
    }
    if (response.status >= 300 && response.status < 400) {
      await response.body?.cancel().catch(() => undefined);
      const location = response.headers.get('location');
      if (location === null || hop >= maxRedirects) {
        throw new UserError(
          ErrorCode.InvalidRequest,
          `${what} could not be downloaded (redirected ${hop + 1} times); upload it again and retry.`,
        );
      }
      current = new URL(location, current).href;
      continue;
    }
    if (!response.ok) {
      await response.body?.cancel().catch(() => undefined);
      throw new UserError(
        ErrorCode.InvalidRequest,
        `${what} could not be downloaded (HTTP ${response.status}); upload it again and retry.`,
      );
    }
    const declared = Number(response.headers.get('content-length'));
    if (Number.isFinite(declared) && declared > maxBytes) {
      await response.body?.cancel().catch(() => undefined);
      throw imageTooLarge(what, declared);
    }
    return readLimited(response, maxBytes, what);
  }
}

/** Reads the body, cancelling the download as soon as it passes `maxBytes`. */
async function readLimited(response: Response, maxBytes: number, what: string): Promise<Uint8Array> {
  const body = response.body;
  if (body === null) return new Uint8Array(0);
  const reader = body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.byteLength;
      if (size > maxBytes) {
        await reader.cancel().catch(() => undefined);
        throw imageTooLarge(what);
      }
      chunks.push(value);
    }
  } catch (error) {
    if (error instanceof UserError) throw error;
    throw downloadFailed(what, error);
  }
  const out = new Uint8Array(size);
  let at = 0;
  for (const chunk of chunks) {
    out.set(chunk, at);
    at += chunk.byteLength;
  }
  return out;
}

function downloadFailed(what: string, cause: unknown): UserError {
  const timedOut = cause instanceof Error && (cause.name === 'TimeoutError' || cause.name === 'AbortError');
  return new UserError(
    ErrorCode.InvalidRequest,
    timedOut
      ? `${what} took too long to download; try again, or send a smaller picture.`
      : `${what} could not be downloaded; upload it again and retry.`,
    { cause },
  );
}
