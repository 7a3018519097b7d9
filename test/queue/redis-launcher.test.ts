import { execFile } from 'node:child_process';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { CodedError, ErrorCode } from '../../core/errors.ts';
import { REDIS_MISSING_MESSAGE, startRedis } from '../../queue/redis-launcher.ts';

const run = promisify(execFile);
const dirs: string[] = [];
async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'launcher-'));
  dirs.push(dir);
  return dir;
}
afterEach(async () => {
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
});

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('redis launcher', () => {
  it('starts a private server with AOF, serves commands, and stops it', async () => {
    const dataDir = await tempDir();
    const handle = await startRedis({ dataDir });
    expect(handle.owned).toBe(true);
    expect(handle.url).toMatch(/^redis:\/\/127\.0\.0\.1:\d+$/);
    const client = new Redis(handle.url, { lazyConnect: true });
    await client.connect();
    await client.set('greeting', 'hello');
    expect(await client.get('greeting')).toBe('hello');
    expect(await client.config('GET', 'appendonly')).toEqual(['appendonly', 'yes']);
    const info = await client.info('server');
    const pid = Number(/process_id:(\d+)/.exec(info)?.[1]);
    expect(pidAlive(pid)).toBe(true);
    await client.quit();
    await handle.stop();
    expect(pidAlive(pid)).toBe(false);
    // AOF files were written into the data dir.
    const files = await readdir(dataDir, { recursive: true });
    expect(files.some((f) => String(f).includes('appendonly'))).toBe(true);
  });

  it('keeps data across a restart on the same data dir', async () => {
    const dataDir = await tempDir();
    const first = await startRedis({ dataDir });
    const a = new Redis(first.url);
    await a.set('kept', '1');
    await a.quit();
    await first.stop();
    const second = await startRedis({ dataDir });
    const b = new Redis(second.url);
    expect(await b.get('kept')).toBe('1');
    await b.quit();
    await second.stop();
  });

  it('refuses a port another server already answers on, instead of handing out that server', async () => {
    const other = await startRedis({ dataDir: await tempDir() });
    try {
      const port = Number(new URL(other.url).port);
      await expect(startRedis({ dataDir: await tempDir(), port })).rejects.toMatchObject({
        code: ErrorCode.Redis,
      });
    } finally {
      await other.stop();
    }
  });

  it('uses REDIS_URL as given and starts nothing', async () => {
    const handle = await startRedis({ url: 'redis://127.0.0.1:1', dataDir: await tempDir() });
    expect(handle).toMatchObject({ url: 'redis://127.0.0.1:1', owned: false });
    await handle.stop();
  });

  it('gives one clear message, quickly, when redis-server is missing', async () => {
    const started = Date.now();
    const error = await startRedis({
      dataDir: await tempDir(),
      binary: 'redis-server-that-does-not-exist',
    }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CodedError);
    expect((error as CodedError).code).toBe(ErrorCode.RedisMissing);
    expect((error as CodedError).message).toBe(REDIS_MISSING_MESSAGE);
    expect(REDIS_MISSING_MESSAGE).toContain('apt-get install redis-server');
    expect(REDIS_MISSING_MESSAGE).toContain('brew install redis');
    expect(REDIS_MISSING_MESSAGE).toContain('REDIS_URL');
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it('stops its server when the owning process exits', async () => {
    const dataDir = await tempDir();
    const script = `
      import { startRedis } from ${JSON.stringify(join(process.cwd(), 'queue/redis-launcher.ts'))};
      const h = await startRedis({ dataDir: ${JSON.stringify(dataDir)} });
      console.log(h.url);
      process.exit(0);
    `;
    const { stdout } = await run(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script]);
    const url = stdout.trim();
    expect(url).toMatch(/^redis:\/\//);
    const port = Number(url.split(':').pop());
    // The child is gone, and so is its server: connecting is refused.
    const probe = new Redis({
      port,
      host: '127.0.0.1',
      lazyConnect: true,
      retryStrategy: () => null,
      maxRetriesPerRequest: 0,
    });
    probe.on('error', () => {});
    let refused = false;
    for (let i = 0; i < 50 && !refused; i++) {
      refused = await probe.connect().then(
        async () => {
          await probe.quit();
          return false;
        },
        () => true,
      );
      if (!refused) await new Promise((r) => setTimeout(r, 100));
    }
    expect(refused).toBe(true);
  });
});
