import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeDiscord } from '../fakes/discord/server.ts';
import { FakeSlack } from '../fakes/slack/index.ts';
import { SHARED_MODELS_DIR } from '../web/app-helper.ts';
import { cleanEnv, ensureStopped, mainArgs, type Running, run } from './processes.ts';

/**
 * Failure paths with every secret set: whatever goes wrong, no token or password may reach stdout,
 * stderr, an HTTP answer or a metric. Each secret is distinctive, so a leak can't hide.
 */
const REDIS_PASSWORD = 'RightRedis:pw@8f3a/1c';
const WRONG_REDIS_PASSWORD = 'Wr0ng:redis@pw/27bd94';
const SECRETS = {
  PLAYGROUND_TOKEN: 'leakcheck-playground-4e1f9a',
  HF_TOKEN: 'hf_leakcheckHubToken7c2d',
  DISCORD_TOKEN: 'leakcheck-discord-token-91b7.x',
  SLACK_BOT_TOKEN: 'xoxb-leakcheck-bot-5d20',
  SLACK_APP_TOKEN: 'xapp-1-leakcheck-app-3c88',
  SLACK_SIGNING_SECRET: 'leakcheck-signing-secret-a61f',
};
const ALL_SECRETS = [
  ...Object.values(SECRETS),
  REDIS_PASSWORD,
  WRONG_REDIS_PASSWORD,
  encodeURIComponent(REDIS_PASSWORD),
  encodeURIComponent(WRONG_REDIS_PASSWORD),
];

function redisUrl(port: number, password: string): string {
  return `redis://:${encodeURIComponent(password)}@127.0.0.1:${port}`;
}

function expectNoSecret(texts: Record<string, string>): void {
  for (const [where, text] of Object.entries(texts))
    for (const secret of ALL_SECRETS)
      expect(text.includes(secret), `${where} contains ${secret}`).toBe(false);
}

/** Resolves once the output holds `count` occurrences of `needle`, or rejects when the process exits first. */
async function waitForOutput(app: Running, needle: string, count: number): Promise<void> {
  let exited = false;
  void app.exited().then(() => {
    exited = true;
  });
  const seen = () => (app.stdout() + app.stderr()).split(needle).length - 1;
  while (seen() < count) {
    if (exited) throw new Error(`exited before ${count}× "${needle}":\n${app.stdout().slice(-3000)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('no secret in any output on failure paths (real app, real redis-server with a password)', () => {
  let dir: string;
  let redis: ChildProcess;
  let redisPort: number;
  const started: Running[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'imagine-secrets-'));
    redisPort = await new Promise<number>((resolve, reject) => {
      const probe = createServer();
      probe.once('error', reject);
      probe.listen(0, '127.0.0.1', () => {
        const { port } = probe.address() as { port: number };
        probe.close(() => resolve(port));
      });
    });
    redis = spawn(
      'redis-server',
      ['--port', String(redisPort), '--bind', '127.0.0.1', '--requirepass', REDIS_PASSWORD, '--save', ''],
      { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    await new Promise<void>((resolve, reject) => {
      let out = '';
      redis.stdout?.on('data', (chunk: Buffer) => {
        out += chunk.toString();
        if (out.includes('Ready to accept connections')) resolve();
      });
      redis.once('exit', (code) => reject(new Error(`redis-server exited ${code}: ${out}`)));
    });
  });
  afterAll(async () => {
    for (const app of started) ensureStopped(app);
    if (redis?.exitCode === null) {
      const gone = new Promise((r) => redis.once('exit', r));
      redis.kill('SIGTERM');
      await gone;
    }
    await rm(dir, { recursive: true, force: true });
  });

  function start(role: string, env: Record<string, string>): Running {
    // node itself (not npx), so a signal reaches the app and its exit code is the app's.
    const app = run(process.execPath, mainArgs(role), cleanEnv({ MODELS_DIR: SHARED_MODELS_DIR, ...env }));
    started.push(app);
    return app;
  }

  it('a wrong password in REDIS_URL (bot): errors logged, readiness answers, nothing leaks', async () => {
    const app = start('bot', {
      ...SECRETS,
      // Chat surfaces stay off here (their failures are the next tests); their secrets are still set.
      DISCORD_TOKEN: '',
      SLACK_BOT_TOKEN: '',
      REDIS_URL: redisUrl(redisPort, WRONG_REDIS_PASSWORD),
      PORT: '0',
      LOG_LEVEL: 'debug',
    });
    const url = String((await app.waitForLog('playground ready')).url);
    // Several clients (queue, events, probe) each fail their handshake and log it.
    await waitForOutput(app, 'WRONGPASS', 5);

    const auth = { authorization: `Bearer ${SECRETS.PLAYGROUND_TOKEN}` };
    const ready = await fetch(`${url}/readyz`, { headers: auth });
    const readyBody = await ready.text();
    expect(ready.status).toBe(503);
    expect(readyBody).toContain('WRONGPASS');
    // /metrics answers too (queue gauges are skipped while Redis refuses), leaking nothing.
    const metrics = await fetch(`${url}/metrics`, { headers: auth, signal: AbortSignal.timeout(10_000) });
    const metricsBody = await metrics.text();
    expect(metrics.status).toBe(200);
    expect(metricsBody).toContain('imagine_');

    // A graceful stop ends although no Redis client ever connected (each part has a close deadline).
    app.child.kill('SIGTERM');
    const exit = await app.exited();
    expect(exit.code).toBe(0);
    expectNoSecret({ stdout: app.stdout(), stderr: app.stderr(), readyz: readyBody, metrics: metricsBody });
    // The errors themselves are still there to read, with the failed command's name.
    expect(app.stdout()).toContain('"command":"hello"');
  });

  it.each(['worker', 'all'])(
    'a wrong password in REDIS_URL (%s): the worker says it could not start and the process ends, nothing leaks',
    async (role) => {
      const app = start(role, {
        ...SECRETS,
        DISCORD_APP_ID: '1234',
        SLACK_MODE: 'http',
        REDIS_URL: redisUrl(redisPort, WRONG_REDIS_PASSWORD),
        WORKER_PORT: '0',
        PORT: '0',
        LOG_LEVEL: 'debug',
        // `all` would start the chat surfaces too: none here (their failures are the next tests).
        ...(role === 'all' ? { DISCORD_TOKEN: '', SLACK_BOT_TOKEN: '' } : {}),
      });
      await app.waitForLog('the worker could not start');
      await waitForOutput(app, 'WRONGPASS', 5);
      // A worker that can't start stops by itself (its clients that never connected don't hold it up).
      const exit = await app.exited();
      expect(exit.code).toBe(1);
      expectNoSecret({ stdout: app.stdout(), stderr: app.stderr() });
      expect(app.stderr()).toContain('the worker could not start: WRONGPASS');
    },
  );

  it('a Discord token that Discord refuses: the start fails, nothing leaks', async () => {
    const discord = await FakeDiscord.start({ token: 'the-token-discord-knows-0000' });
    try {
      const app = start('bot', {
        ...SECRETS,
        SLACK_BOT_TOKEN: '',
        REDIS_URL: redisUrl(redisPort, REDIS_PASSWORD),
        PORT: '0',
        LOG_LEVEL: 'debug',
        DISCORD_APP_ID: discord.appId,
        DISCORD_API_URL: discord.apiUrl,
      });
      const exit = await app.exited();
      expect(exit.code).toBe(1);
      expect(app.stderr()).toContain('could not start');
      expectNoSecret({ stdout: app.stdout(), stderr: app.stderr() });
    } finally {
      await discord.close();
    }
  });

  it('Slack tokens that Slack refuses: the start fails, nothing leaks', async () => {
    const slack = await new FakeSlack().start();
    try {
      const app = start('bot', {
        ...SECRETS,
        DISCORD_TOKEN: '',
        REDIS_URL: redisUrl(redisPort, REDIS_PASSWORD),
        PORT: '0',
        LOG_LEVEL: 'debug',
        SLACK_API_URL: slack.apiUrl,
      });
      const exit = await app.exited();
      expect(exit.code).toBe(1);
      expect(app.stderr()).toContain('could not start');
      expectNoSecret({ stdout: app.stdout(), stderr: app.stderr() });
    } finally {
      await slack.stop();
    }
  });

  it('a malformed REDIS_URL holding a password: the config error names REDIS_URL, not the password', async () => {
    const app = start('bot', {
      ...SECRETS,
      DISCORD_TOKEN: '',
      SLACK_BOT_TOKEN: '',
      REDIS_URL: `redis://admin:${encodeURIComponent(REDIS_PASSWORD)}@127.0.0.1:port/0`,
    });
    const exit = await app.exited();
    expect(exit.code).toBe(1);
    expect(app.stderr()).toContain(
      '  - REDIS_URL: must be a redis:// or rediss:// URL, got a value that is not a URL',
    );
    expectNoSecret({ stdout: app.stdout(), stderr: app.stderr() });
  });
});
