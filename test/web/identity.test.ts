import { randomBytes } from 'node:crypto';
import { request } from 'node:http';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IDENTITY_ISSUE_DEFAULTS } from '../../bots/web/auth.ts';
import { identitySecretKey } from '../../bots/web/secret.ts';
import { MAX_STREAMS_PER_USER } from '../../bots/web/surface.ts';
import { JOB_SPEC_VERSION } from '../../core/jobspec.ts';
import { createJobs, silentLogger } from '../../queue/index.ts';
import {
  call,
  getFrom,
  type Job,
  loopbackAddress,
  newUser,
  raw,
  startTestApp,
  type TestApp,
  waitForJob,
} from './app-helper.ts';

const json = { 'content-type': 'application/json' };
const ISSUED_RE = /^imagine_uid=(u-[a-f0-9]{16})\.[A-Za-z0-9_-]{43}$/u;

function uidOf(user: { cookie: string }): string {
  const match = ISSUED_RE.exec(user.cookie);
  if (match === null) throw new Error(`not an issued cookie: ${user.cookie}`);
  return match[1]!;
}

/** Flips the last character of a cookie value (its signature, or the id when `at` points there). */
function tamper(cookie: string, at = cookie.length - 1): string {
  const c = cookie[at]!;
  const next = c === 'a' ? 'b' : 'a';
  return cookie.slice(0, at) + next + cookie.slice(at + 1);
}

interface OpenStream {
  readonly status: number;
  readonly body: string;
  close(): Promise<void>;
}

/** Opens GET /api/events over its own socket; resolves once the status is known (the stream stays open). */
function openStream(base: string, cookie: string): Promise<OpenStream> {
  const url = new URL('/api/events', base);
  return new Promise((resolve, reject) => {
    const options = {
      host: url.hostname,
      port: url.port,
      path: url.pathname,
      headers: { cookie },
      agent: false,
    };
    const req = request(options, (res) => {
      const socket = res.socket;
      const closed = new Promise<void>((done) => {
        if (socket.destroyed) done();
        else socket.once('close', () => done());
      });
      const close = async () => {
        req.destroy();
        await closed;
      };
      if (res.statusCode !== 200) {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => {
          body += c;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body, close }));
        return;
      }
      // The first bytes (the retry hint) show the server registered the stream.
      res.once('data', () => resolve({ status: 200, body: '', close }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('playground identities are issued by the server and cannot be forged', () => {
  let t: TestApp;

  beforeAll(async () => {
    t = await startTestApp();
  });
  afterAll(async () => {
    await t?.stop();
  });

  it('issues a signed HttpOnly SameSite cookie and accepts it back without issuing another', async () => {
    const first = await getFrom(t.url, '/api/info', loopbackAddress());
    expect(first.setCookie).toHaveLength(1);
    const header = first.setCookie[0]!;
    expect(header.split(';')[0]).toMatch(ISSUED_RE);
    expect(header).toContain('HttpOnly');
    expect(header).toContain('SameSite=Strict');
    const cookie = header.split(';')[0]!;
    const again = await getFrom(t.url, '/api/info', loopbackAddress(), { cookie });
    expect(again.setCookie).toEqual([]);
    // The page itself issues one too (assets don't need one).
    expect((await getFrom(t.url, '/', loopbackAddress())).setCookie).toHaveLength(1);
    expect((await getFrom(t.url, '/app.js', loopbackAddress())).setCookie).toEqual([]);
  });

  it('treats made-up, unsigned and altered cookies as no cookie', async () => {
    const owner = await newUser(t.url);
    const made = await call<{ id: string }>(`${t.url}/api/imagine`, {
      method: 'POST',
      headers: owner,
      json: { text: 'mine alone --steps 50' },
    });
    expect(made.status).toBe(202);
    const uid = uidOf(owner);
    const forged = [
      `imagine_uid=${uid}`,
      `imagine_uid=u-${randomBytes(8).toString('hex')}`,
      tamper(owner.cookie),
      // The id changed, the signature kept.
      tamper(owner.cookie, 'imagine_uid=u-'.length),
      `imagine_uid=${uid}.${'A'.repeat(43)}`,
    ];
    for (const cookie of forged) {
      // No valid cookie: a new one is offered, and the request is not the owner.
      const info = await getFrom(t.url, '/api/info', loopbackAddress(), { cookie });
      expect(info.setCookie, cookie).toHaveLength(1);
      expect(info.setCookie[0]!.split(';')[0], cookie).not.toContain(uid);
      const cancel = await raw(t.url, 'POST', `/api/jobs/${made.body.id}/cancel`, undefined, { cookie });
      expect(cancel.status, cookie).toBe(403);
    }
    expect(
      (await call(`${t.url}/api/jobs/${made.body.id}/cancel`, { method: 'POST', headers: owner })).status,
    ).toBe(200);
  });

  it('40 submissions with made-up cookies from one client get no more than one user quota', async () => {
    // Another person's long job keeps the worker busy, so the submissions below stay unfinished.
    const busy = await newUser(t.url);
    const blocker = await call<{ id: string }>(`${t.url}/api/imagine`, {
      method: 'POST',
      headers: busy,
      json: { text: 'keeps the worker busy --steps 50' },
    });
    expect(blocker.status).toBe(202);
    const from = loopbackAddress();
    const accepted: string[] = [];
    const refused: string[] = [];
    for (let i = 0; i < 40; i++) {
      const cookie = `imagine_uid=u-${randomBytes(8).toString('hex')}`;
      const res = await raw(
        t.url,
        'POST',
        '/api/imagine',
        JSON.stringify({ text: `churn ${i} --steps 50` }),
        { ...json, cookie },
        from,
      );
      if (res.status === 202) accepted.push((JSON.parse(res.body) as { id: string }).id);
      else refused.push((JSON.parse(res.body) as { error: { code: string } }).error.code);
    }
    // A job that finished during the loop frees its slot; count only what was unfinished at once.
    const finished = (await Promise.all(accepted.map((id) => call<Job>(`${t.url}/api/jobs/${id}`)))).filter(
      (r) => ['done', 'failed', 'cancelled'].includes(r.body.status),
    ).length;
    expect(accepted.length - finished).toBeLessThanOrEqual(2); // PER_USER_LIMIT
    expect(accepted.length).toBeLessThan(40);
    expect(new Set(refused)).toEqual(new Set(['E_RATE_LIMITED']));
    for (const id of accepted) await raw(t.url, 'POST', `/api/jobs/${id}/cancel`, undefined, {}, from);
    await call(`${t.url}/api/jobs/${blocker.body.id}/cancel`, { method: 'POST', headers: busy });
  });

  it('issues new identities to one address only within its limit', async () => {
    const from = loopbackAddress();
    const issued = new Set<string>();
    for (let i = 0; i < 40; i++) {
      const res = await getFrom(t.url, '/api/info', from, {
        cookie: `imagine_uid=u-${randomBytes(8).toString('hex')}`,
      });
      expect(res.status).toBe(200);
      for (const c of res.setCookie) issued.add(c.split(';')[0]!);
    }
    expect(issued.size).toBeGreaterThan(0);
    expect(issued.size).toBeLessThanOrEqual(IDENTITY_ISSUE_DEFAULTS.burst);
    // Another address has its own allowance.
    expect((await getFrom(t.url, '/api/info', loopbackAddress())).setCookie).toHaveLength(1);
  });

  it('no answer names another user; cancelledBy says you, owner or admin', async () => {
    const owner = await newUser(t.url);
    const other = await newUser(t.url);
    const uid = uidOf(owner);
    const made = await call<{ id: string }>(`${t.url}/api/imagine`, {
      method: 'POST',
      headers: owner,
      json: { text: 'whose is this --steps 50' },
    });
    expect(made.status).toBe(202);
    // A job made with an Idempotency-Key: its id is derived from the key and the user, but hides the user.
    const keyed = await call<{ id: string }>(`${t.url}/api/imagine`, {
      method: 'POST',
      headers: { ...owner, 'idempotency-key': 'retry-safe-key-1' },
      json: { text: 'keyed --steps 1' },
    });
    expect(keyed.status).toBe(202);
    const seen: string[] = [JSON.stringify(made.body), JSON.stringify(keyed.body)];
    const asOther = async (method: string, path: string) => {
      const res = await raw(t.url, method, path, undefined, other);
      seen.push(res.body);
      return res;
    };
    await asOther('GET', `/api/jobs/${made.body.id}`);
    expect((await asOther('POST', `/api/jobs/${made.body.id}/cancel`)).status).toBe(403);
    await asOther('POST', `/api/jobs/${made.body.id}/refine/1`);
    await asOther('GET', '/api/info');
    await call(`${t.url}/api/jobs/${made.body.id}/cancel`, { method: 'POST', headers: owner });
    const cancelled = await waitForJob(t.url, made.body.id, ['cancelled'], { headers: other });
    expect((cancelled as Job & { cancelledBy: string }).cancelledBy).toBe('owner');
    seen.push(JSON.stringify(cancelled));
    const mine = await waitForJob(t.url, made.body.id, ['cancelled'], { headers: owner });
    expect((mine as Job & { cancelledBy: string }).cancelledBy).toBe('you');
    for (const body of seen) expect(body).not.toContain(uid);
  });

  it('Discord and Slack jobs are invisible to web callers (404, as unknown ids)', async () => {
    const jobs = createJobs({ connection: t.app.redis, prefix: 'imagine', logger: silentLogger });
    try {
      const ids: string[] = [];
      for (const surface of ['discord', 'slack'] as const) {
        const submitted = await jobs.submit({
          v: JOB_SPEC_VERSION,
          kind: 'imagine',
          prompts: ['a chat job'],
          seeds: [1],
          negative: '',
          sampler: 'euler',
          steps: 1,
          guidance: 7.5,
          width: 64,
          height: 64,
          origin: {
            surface,
            user: `U${randomBytes(4).toString('hex')}`,
            channel: 'C1',
            interactionId: `i${randomBytes(6).toString('hex')}`,
          },
          requestedAt: Date.now(),
        });
        expect(submitted.jobId.startsWith(`${surface}-`)).toBe(true);
        expect(await jobs.record(submitted.jobId)).not.toBeNull();
        ids.push(submitted.jobId);
      }
      const user = await newUser(t.url);
      const unknown = await raw(t.url, 'GET', '/api/jobs/web-never-was', undefined, user);
      expect(unknown.status).toBe(404);
      for (const id of ids) {
        for (const [method, path] of [
          ['GET', `/api/jobs/${id}`],
          ['GET', `/api/jobs/${id}/grid.png`],
          ['GET', `/api/jobs/${id}/images/1.png`],
          ['POST', `/api/jobs/${id}/refine/1`],
          ['POST', `/api/jobs/${id}/reroll`],
          ['POST', `/api/jobs/${id}/upscale/1`],
          ['POST', `/api/jobs/${id}/cancel`],
        ] as const) {
          const res = await raw(t.url, method, path, undefined, user);
          expect(res.status, `${method} ${path}`).toBe(404);
          const error = (JSON.parse(res.body) as { error: { code: string; message: string } }).error;
          expect(error.code).toBe('E_NOT_FOUND');
          expect(error.message).toBe(
            (JSON.parse(unknown.body) as { error: { message: string } }).error.message.replace(
              'web-never-was',
              id,
            ),
          );
        }
        // Still there, untouched.
        const record = await jobs.record(id);
        expect(record?.state.status.state).not.toBe('cancelled');
      }
    } finally {
      await jobs.close();
    }
  });

  it('?job= streams the listed web jobs to another browser as `job` events; other ids are ignored', async () => {
    const owner = await newUser(t.url);
    const watcher = await newUser(t.url);
    const made = await call<{ id: string }>(`${t.url}/api/imagine`, {
      method: 'POST',
      headers: owner,
      json: { text: 'watched by someone else --steps 50' },
    });
    expect(made.status).toBe(202);
    const controller = new AbortController();
    const stream = await fetch(`${t.url}/api/events?job=discord-123,${made.body.id}`, {
      headers: watcher,
      signal: controller.signal,
    });
    expect(stream.status).toBe(200);
    const reader = stream.body!.getReader();
    const decoder = new TextDecoder();
    let text = '';
    // The first bytes mean the stream is registered; then the owner cancels.
    text += decoder.decode((await reader.read()).value, { stream: true });
    await call(`${t.url}/api/jobs/${made.body.id}/cancel`, { method: 'POST', headers: owner });
    while (!text.includes('"status":"cancelled"')) {
      const { value, done } = await reader.read();
      if (done) break;
      text += decoder.decode(value, { stream: true });
    }
    controller.abort();
    expect(text).toContain(`event: job\ndata: {"type":"job","id":"${made.body.id}","status":"cancelled"}`);
    expect(text).not.toContain(uidOf(owner));
  });

  it(`allows ${MAX_STREAMS_PER_USER} open event streams per identity, then answers 429 (real sockets)`, async () => {
    const user = await newUser(t.url);
    const open: OpenStream[] = [];
    try {
      for (let i = 0; i < MAX_STREAMS_PER_USER; i++) {
        const stream = await openStream(t.url, user.cookie);
        open.push(stream);
        expect(stream.status).toBe(200);
      }
      const refused = await openStream(t.url, user.cookie);
      open.push(refused);
      expect(refused.status).toBe(429);
      const error = (JSON.parse(refused.body) as { error: { code: string; message: string } }).error;
      expect(error.code).toBe('E_RATE_LIMITED');
      expect(error.message).toContain(`at most ${MAX_STREAMS_PER_USER}`);
      // Someone else is not affected.
      const other = await openStream(t.url, (await newUser(t.url)).cookie);
      open.push(other);
      expect(other.status).toBe(200);
      // Closing one frees its place (the server sees the close when the socket ends).
      await open[0]!.close();
      let again = await openStream(t.url, user.cookie);
      while (again.status === 429) {
        await again.close();
        again = await openStream(t.url, user.cookie);
      }
      open.push(again);
      expect(again.status).toBe(200);
    } finally {
      for (const stream of open) await stream.close();
    }
  });
});

describe('the signing secret lives in Redis, so identities survive a restart', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp();
  });
  afterAll(async () => {
    await t?.stop();
  });

  it('a second process on the same Redis and prefix accepts the cookie; another prefix does not', async () => {
    const user = await newUser(t.url);
    const redis = new Redis(t.app.redis as string);
    try {
      expect(await redis.get(identitySecretKey('imagine'))).toMatch(/^[0-9a-f]{64}$/u);
    } finally {
      redis.disconnect();
    }
    const same = await startTestApp({ REDIS_URL: t.app.redis as string }, 'bot');
    try {
      const res = await getFrom(same.url, '/api/info', loopbackAddress(), user);
      expect(res.setCookie).toEqual([]);
    } finally {
      await same.stop();
    }
    const other = await startTestApp({ REDIS_URL: t.app.redis as string, QUEUE_PREFIX: 'other' }, 'bot');
    try {
      const res = await getFrom(other.url, '/api/info', loopbackAddress(), user);
      expect(res.setCookie).toHaveLength(1);
    } finally {
      await other.stop();
    }
  });
});
