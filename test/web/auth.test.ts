import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, raw, startTestApp, type TestApp } from './app-helper.ts';

const TOKEN = 'pg-secret-4f9a1c7e2b';

describe('playground access with PLAYGROUND_TOKEN', () => {
  let t: TestApp;

  beforeAll(async () => {
    t = await startTestApp({ PLAYGROUND_TOKEN: TOKEN });
  });
  afterAll(async () => {
    await t?.stop();
  });

  it('keeps health probes open and everything else closed without the token', async () => {
    expect((await call(`${t.url}/healthz`)).status).toBe(200);
    expect((await call(`${t.url}/readyz`)).status).toBe(200);
    for (const path of ['/api/info', '/metrics', '/api/events', '/app.js']) {
      const res = await call(`${t.url}${path}`);
      expect(res.status, path).toBe(401);
      expect(res.headers.get('www-authenticate')).toContain('Bearer');
    }
    const post = await call(`${t.url}/api/imagine`, { method: 'POST', json: { text: 'a cat' } });
    expect(post.status).toBe(401);
    const page = await fetch(`${t.url}/`);
    expect(page.status).toBe(401);
    expect(await page.text()).toContain('/?token=');
  });

  it('accepts the Bearer token and refuses a wrong one', async () => {
    const ok = await call(`${t.url}/api/info`, { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(ok.status).toBe(200);
    const metrics = await fetch(`${t.url}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(metrics.status).toBe(200);
    for (const header of [`Bearer ${TOKEN}x`, 'Bearer', `Basic ${TOKEN}`, TOKEN]) {
      expect((await call(`${t.url}/api/info`, { headers: { authorization: header } })).status, header).toBe(
        401,
      );
    }
  });

  it('the login link sets an HttpOnly session cookie (not the token) and drops the token from the URL', async () => {
    const wrong = await fetch(`${t.url}/?token=nope`, { redirect: 'manual' });
    expect(wrong.status).toBe(401);
    expect(wrong.headers.get('set-cookie')).toBeNull();

    const login = await fetch(`${t.url}/?token=${TOKEN}`, { redirect: 'manual' });
    expect(login.status).toBe(303);
    expect(login.headers.get('location')).toBe('/');
    const cookie = login.headers.get('set-cookie') ?? '';
    expect(cookie).toMatch(/^imagine_session=[0-9a-f]{64};/);
    expect(cookie).toContain('HttpOnly');
    expect(cookie).toContain('SameSite=Strict');
    expect(cookie).not.toContain(TOKEN);

    const session = cookie.split(';')[0]!;
    const page = await fetch(`${t.url}/`, { headers: { cookie: session } });
    expect(page.status).toBe(200);
    expect(page.headers.get('content-security-policy')).toContain("script-src 'self'");
    expect(await page.text()).toContain('<script type="module" src="/app.js">');
    const made = await call<{ id: string }>(`${t.url}/api/imagine`, {
      method: 'POST',
      headers: { cookie: session },
      json: { text: 'logged in --steps 2' },
    });
    expect(made.status).toBe(202);
    expect((await call(`${t.url}/api/info`, { headers: { cookie: 'imagine_session=forged' } })).status).toBe(
      401,
    );
  });

  it('refuses cross-site posts even with a valid session', async () => {
    const res = await call(`${t.url}/api/imagine`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}`, origin: 'https://evil.example' },
      json: { text: 'a cat' },
    });
    expect(res.status).toBe(403);
  });

  it('never writes the token to the logs', async () => {
    await fetch(`${t.url}/?token=${TOKEN}`, { redirect: 'manual' });
    await fetch(`${t.url}/api/jobs/web-x?token=${TOKEN}`, { headers: { authorization: `Bearer ${TOKEN}` } });
    const logs = t.logs();
    expect(logs).toContain('http request');
    expect(logs).not.toContain(TOKEN);
  });
});

describe('playground without a token (loopback only)', () => {
  let t: TestApp;

  beforeAll(async () => {
    t = await startTestApp();
  });
  afterAll(async () => {
    await t?.stop();
  });

  it('is open on loopback names but refuses other Host names (DNS rebinding)', async () => {
    expect((await call(`${t.url}/api/info`)).status).toBe(200);
    const port = new URL(t.url).port;
    expect((await raw(t.url, 'GET', '/api/info', undefined, { host: `localhost:${port}` })).status).toBe(200);
    const rebound = await raw(t.url, 'GET', '/api/info', undefined, { host: `attacker.example:${port}` });
    expect(rebound.status).toBe(403);
    expect(JSON.parse(rebound.body)).toMatchObject({ error: { code: 'E_FORBIDDEN' } });
    // Names that merely start with 127. resolve wherever their owner wants (DNS rebinding).
    for (const host of [
      `127.attacker.example:${port}`,
      '127.attacker.example',
      `127.0.0.1.nip.io:${port}`,
      `127.0.0.1:${port}:1`,
      `[::1:${port}`,
      `localhost.attacker.example:${port}`,
    ]) {
      const res = await raw(t.url, 'GET', '/api/info', undefined, { host });
      expect(res.status, host).toBe(403);
      expect(JSON.parse(res.body), host).toMatchObject({ error: { code: 'E_FORBIDDEN' } });
    }
    for (const host of [`127.0.0.1:${port}`, `127.9.8.7:${port}`, `[::1]:${port}`, '[::1]', 'localhost']) {
      expect((await raw(t.url, 'GET', '/api/info', undefined, { host })).status, host).toBe(200);
    }
    // Probes answer whatever the Host (container healthchecks use the service name).
    expect((await raw(t.url, 'GET', '/healthz', undefined, { host: 'bot:8787' })).status).toBe(200);
  });

  it('refuses cross-site form posts', async () => {
    const res = await fetch(`${t.url}/api/imagine`, {
      method: 'POST',
      headers: { origin: 'http://evil.example', 'content-type': 'text/plain' },
      body: '{"text":"a cat"}',
    });
    expect(res.status).toBe(403);
  });
});
