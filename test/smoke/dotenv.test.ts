import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call } from '../web/app-helper.ts';
import { cleanEnv, ensureStopped, mainArgs, type Running, run } from './processes.ts';

const TOKEN = 'dotenv-playground-token-5b7e0c';

/** What a .env-only setup gets: the bot started from a folder holding nothing but its .env. */
describe('.env in the working directory', () => {
  let dir: string;
  let app: Running | undefined;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'imagine-dotenv-'));
  });
  afterAll(async () => {
    ensureStopped(app);
    await rm(dir, { recursive: true, force: true });
  });

  it('is read (the environment wins), named in the log without its values, and surfaces are listed', async () => {
    await writeFile(
      join(dir, '.env'),
      [
        '# settings for this test',
        'PORT=0',
        `REDIS_DATA_DIR=${join(dir, 'redis')}`,
        'export DEFAULT_STEPS=7',
        `SUFFIXES=", from dotenv|, second"   # quoted, with a comment`,
        `PLAYGROUND_TOKEN='${TOKEN}'`,
        // Empty means unset: the private redis-server is started.
        'REDIS_URL=',
        // The environment below says info; without it nothing would be logged at all.
        'LOG_LEVEL=silent',
      ].join('\n'),
    );
    const env = cleanEnv({ LOG_LEVEL: 'info' });
    // Unset in the environment, so the file's values apply.
    for (const key of [
      'PORT',
      'REDIS_DATA_DIR',
      'DEFAULT_STEPS',
      'SUFFIXES',
      'PLAYGROUND_TOKEN',
      'REDIS_URL',
    ])
      delete env[key];
    app = run(process.execPath, mainArgs('bot'), env, { cwd: dir });

    const read = await app.waitForLog('read settings from');
    expect(read.envFile).toBe(join(dir, '.env'));
    expect(read.fromFile).toEqual([
      'PORT',
      'REDIS_DATA_DIR',
      'DEFAULT_STEPS',
      'SUFFIXES',
      'PLAYGROUND_TOKEN',
      'REDIS_URL',
    ]);
    expect(read.overriddenByEnvironment).toEqual(['LOG_LEVEL']);
    await app.waitForLog('redis-server started on');
    const url = String((await app.waitForLog('playground ready')).url);

    const info = await call<{ suffixes: string[]; defaults: { steps: number } }>(`${url}/api/info`, {
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    expect(info.status).toBe(200);
    expect(info.body.suffixes).toEqual([', from dotenv', ', second']);
    expect(info.body.defaults.steps).toBe(7);

    const surfaces = Object.fromEntries(
      await Promise.all(
        ['playground', 'worker', 'discord', 'slack'].map(
          async (s) => [s, await app!.waitForLog(`${s}: `)] as const,
        ),
      ),
    );
    expect(surfaces.playground).toMatchObject({ on: true, detail: url });
    expect(surfaces.worker?.on).toBe(false);
    expect(String(surfaces.worker?.detail)).toContain('npm run worker');
    expect(surfaces.discord).toMatchObject({ on: false, detail: 'set DISCORD_TOKEN and DISCORD_APP_ID' });
    expect(surfaces.slack?.on).toBe(false);
    expect(String(surfaces.slack?.detail)).toContain('SLACK_BOT_TOKEN');

    app.child.kill('SIGTERM');
    expect((await app.exited()).code).toBe(0);
    expect(app.stdout() + app.stderr()).not.toContain(TOKEN);
  });

  it('a bad line stops the start with its line number, and never quotes it', async () => {
    const bad = await mkdtemp(join(tmpdir(), 'imagine-dotenv-bad-'));
    try {
      await writeFile(join(bad, '.env'), 'PORT=0\nxoxb-pasted-without-a-name\n');
      const child = run(process.execPath, mainArgs('bot'), cleanEnv({}), { cwd: bad });
      expect((await child.exited()).code).toBe(1);
      expect(child.stderr()).toContain(`Invalid ${join(bad, '.env')}:\n  - line 2: expected KEY=value`);
      expect(child.stderr()).not.toContain('xoxb-pasted');
    } finally {
      await rm(bad, { recursive: true, force: true });
    }
  });
});
