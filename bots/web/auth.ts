import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { isLoopbackHost } from '../../core/config.ts';

/**
 * Access to the playground. Without a token it is open, and only reachable on loopback (config
 * refuses a non-loopback HOST without PLAYGROUND_TOKEN). With a token, every request but the health
 * probes needs `Authorization: Bearer <token>` or the session cookie that the login link
 * `/?token=<token>` sets. The cookie holds an HMAC of the token, never the token itself.
 */

export const SESSION_COOKIE = 'imagine_session';
export const USER_COOKIE = 'imagine_uid';

export function parseCookies(header: string | undefined): Map<string, string> {
  const cookies = new Map<string, string>();
  if (header === undefined) return cookies;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq <= 0) continue;
    const name = part.slice(0, eq).trim();
    const value = part.slice(eq + 1).trim();
    try {
      cookies.set(name, decodeURIComponent(value));
    } catch {
      cookies.set(name, value);
    }
  }
  return cookies;
}

function digest(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}

/** Constant-time string comparison (through digests, so lengths don't leak either). */
export function safeEqual(a: string, b: string): boolean {
  return timingSafeEqual(digest(a), digest(b));
}

export class Access {
  readonly #token: string | undefined;
  readonly #session: string | undefined;

  constructor(token: string | undefined) {
    this.#token = token;
    this.#session =
      token === undefined
        ? undefined
        : createHmac('sha256', token).update('imagine-playground-session').digest('hex');
  }

  get required(): boolean {
    return this.#token !== undefined;
  }

  /** True when the request may use the playground and API. */
  allows(req: IncomingMessage): boolean {
    if (this.#token === undefined || this.#session === undefined) return true;
    const auth = req.headers.authorization;
    if (auth !== undefined) {
      const match = /^Bearer\s+(.+)$/iu.exec(auth.trim());
      return match !== null && safeEqual(match[1]!, this.#token);
    }
    const cookie = parseCookies(req.headers.cookie).get(SESSION_COOKIE);
    return cookie !== undefined && safeEqual(cookie, this.#session);
  }

  /** The session cookie for a login link carrying the right token, else undefined. */
  login(token: string, secure: boolean): string | undefined {
    if (this.#token === undefined || this.#session === undefined || !safeEqual(token, this.#token)) {
      return undefined;
    }
    return cookie(SESSION_COOKIE, this.#session, { maxAgeSeconds: 30 * 24 * 3600, secure });
  }
}

export function cookie(
  name: string,
  value: string,
  options: { maxAgeSeconds: number; secure: boolean },
): string {
  const parts = [
    `${name}=${encodeURIComponent(value)}`,
    'Path=/',
    `Max-Age=${options.maxAgeSeconds}`,
    'HttpOnly',
    'SameSite=Strict',
  ];
  if (options.secure) parts.push('Secure');
  return parts.join('; ');
}

const USER_RE = /^u-[a-f0-9]{16}$/u;

/**
 * Who is asking. Browsers get a random id in a cookie (their per-user cap and their own jobs' live
 * updates); clients without cookies are keyed by address, so a script can't dodge the per-user cap
 * by dropping cookies.
 */
export function identify(req: IncomingMessage): { user: string; setCookie?: string } {
  const existing = parseCookies(req.headers.cookie).get(USER_COOKIE);
  if (existing !== undefined && USER_RE.test(existing)) return { user: existing };
  const fresh = `u-${randomBytes(8).toString('hex')}`;
  const address = req.socket.remoteAddress ?? 'unknown';
  const byAddress = `ip-${createHash('sha256').update(address).digest('hex').slice(0, 16)}`;
  return {
    user: byAddress,
    setCookie: cookie(USER_COOKIE, fresh, { maxAgeSeconds: 365 * 24 * 3600, secure: isSecure(req) }),
  };
}

export function isSecure(req: IncomingMessage): boolean {
  return (
    (req.socket as { encrypted?: boolean }).encrypted === true || req.headers['x-forwarded-proto'] === 'https'
  );
}

/**
 * Blocks DNS rebinding (a web page making the browser call 127.0.0.1 under its own name) and
 * cross-site form posts: on an open loopback playground the Host must be a loopback name, and a
 * state-changing request's Origin, when sent, must be this host.
 */
export function checkOrigin(req: IncomingMessage, openLoopback: boolean): string | undefined {
  const host = req.headers.host ?? '';
  if (openLoopback) {
    const name = hostName(host);
    if (name === undefined || !isLoopbackHost(name)) {
      return `This playground only answers on loopback names (127.0.0.1, localhost, [::1]), not "${host}".`;
    }
  }
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    const origin = req.headers.origin;
    if (origin !== undefined && origin !== 'null') {
      try {
        if (new URL(origin).host !== host) return 'Cross-site requests are not accepted.';
      } catch {
        return 'Cross-site requests are not accepted.';
      }
    } else if (origin === 'null') {
      return 'Cross-site requests are not accepted.';
    }
  }
  return undefined;
}

/** The name part of a Host header (`name`, `name:port`, `[v6]`, `[v6]:port`); undefined when malformed. */
export function hostName(host: string): string | undefined {
  const match = /^(\[[0-9A-Fa-f:.]+\]|[^:[\]]+)(?::\d{1,5})?$/u.exec(host.trim());
  return match?.[1];
}
