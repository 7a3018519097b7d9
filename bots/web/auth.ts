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

/** How many new identities one client address may be issued: a burst, then one more per interval. */
export interface IdentityIssueLimit {
  /** @defaultValue 10 */
  readonly burst: number;
  /** @defaultValue 360000 (6 minutes: 10 an hour once the burst is spent) */
  readonly refillMs: number;
  /** Addresses remembered at once; the least recently seen is forgotten first. @defaultValue 10000 */
  readonly maxAddresses: number;
}

export const IDENTITY_ISSUE_DEFAULTS = {
  burst: 10,
  refillMs: 6 * 60_000,
  maxAddresses: 10_000,
} as const satisfies IdentityIssueLimit;

/** Signed user cookie: `u-<16 hex>.<HMAC-SHA256 of the id, base64url>`. */
const USER_COOKIE_RE = /^(u-[a-f0-9]{16})\.([A-Za-z0-9_-]{43})$/u;

export interface Identity {
  /** `u-<hex>` from a valid signed cookie, else `ip-<hash of the address>`. */
  readonly user: string;
  /** A newly issued signed cookie, when this request had none (or a bad one) and the address may have one. */
  readonly setCookie?: string;
}

/**
 * Who is asking. Identities are issued by this server and signed with a secret (see
 * `redisIdentitySecret`), so a client can't pick one: an unknown, unsigned or altered cookie counts
 * as no cookie. A request without a valid cookie acts as its client address (`ip-…`), so dropping or
 * inventing cookies never buys a fresh per-user quota; it is also offered a new signed cookie, for
 * its next requests, as long as its address is within the issue limit. The address is the socket's
 * remote address: `X-Forwarded-For` is not trusted, so behind a reverse proxy every client shares the
 * proxy's address (and its issue limit).
 */
export class Identities {
  readonly #loadSecret: () => Promise<Buffer>;
  #secret: Promise<Buffer> | undefined;
  readonly #limit: IdentityIssueLimit;
  readonly #now: () => number;
  /** Per address: tokens left and when they were counted. Map order = least recently seen first. */
  readonly #buckets = new Map<string, { tokens: number; at: number }>();

  constructor(
    options: {
      /** The signing secret; called until it succeeds once. @defaultValue a random per-process secret */
      readonly secret?: () => Promise<Buffer>;
      readonly limit?: Partial<IdentityIssueLimit>;
      /** @defaultValue Date.now */
      readonly now?: () => number;
    } = {},
  ) {
    const fallback = randomBytes(32);
    this.#loadSecret = options.secret ?? (async () => fallback);
    this.#limit = { ...IDENTITY_ISSUE_DEFAULTS, ...options.limit };
    this.#now = options.now ?? Date.now;
  }

  async identify(req: IncomingMessage): Promise<Identity> {
    const secret = await this.#getSecret();
    const existing = USER_COOKIE_RE.exec(parseCookies(req.headers.cookie).get(USER_COOKIE) ?? '');
    if (existing !== null && safeEqual(existing[2]!, sign(secret, existing[1]!)))
      return { user: existing[1]! };
    const address = req.socket.remoteAddress ?? 'unknown';
    const user = `ip-${createHash('sha256').update(address).digest('hex').slice(0, 16)}`;
    if (!this.#take(address)) return { user };
    const fresh = `u-${randomBytes(8).toString('hex')}`;
    return {
      user,
      setCookie: cookie(USER_COOKIE, `${fresh}.${sign(secret, fresh)}`, {
        maxAgeSeconds: 365 * 24 * 3600,
        secure: isSecure(req),
      }),
    };
  }

  #getSecret(): Promise<Buffer> {
    this.#secret ??= this.#loadSecret().catch((error: unknown) => {
      // Not cached: the next request tries again (Redis may be back).
      this.#secret = undefined;
      throw error;
    });
    return this.#secret;
  }

  /** Token bucket per address. */
  #take(address: string): boolean {
    const now = this.#now();
    const { burst, refillMs, maxAddresses } = this.#limit;
    const bucket = this.#buckets.get(address) ?? { tokens: burst, at: now };
    this.#buckets.delete(address);
    const tokens = Math.min(burst, bucket.tokens + Math.max(0, now - bucket.at) / refillMs);
    const allowed = tokens >= 1;
    this.#buckets.set(address, { tokens: allowed ? tokens - 1 : tokens, at: now });
    while (this.#buckets.size > maxAddresses) {
      const oldest = this.#buckets.keys().next().value;
      if (oldest === undefined) break;
      this.#buckets.delete(oldest);
    }
    return allowed;
  }
}

function sign(secret: Buffer, id: string): string {
  return createHmac('sha256', secret).update(`imagine-uid:${id}`).digest('base64url');
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
