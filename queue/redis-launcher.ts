import { type ChildProcess, spawn } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { createServer, Socket } from 'node:net';
import { resolve } from 'node:path';
import { CodedError, ErrorCode } from '../core/errors.ts';

export interface RedisLauncherOptions {
  /** Use this server instead of starting one. */
  readonly url?: string | undefined;
  /** Where the private server keeps its AOF files. */
  readonly dataDir: string;
  /** @defaultValue `'redis-server'` (found on PATH) */
  readonly binary?: string;
  /** @defaultValue 15000 */
  readonly startTimeoutMs?: number;
  /** Port of the private server (e.g. to restart one on the port its clients use). @defaultValue a free one */
  readonly port?: number;
  readonly log?: (message: string) => void;
}

export interface RedisHandle {
  readonly url: string;
  /** True when this process started the server (and so stops it). */
  readonly owned: boolean;
  /** The private server's process id (undefined for REDIS_URL). */
  readonly pid?: number | undefined;
  stop(): Promise<void>;
}

export const REDIS_MISSING_MESSAGE =
  'redis-server was not found, and REDIS_URL is not set.\n' +
  '  Install it:   sudo apt-get install redis-server   (Debian/Ubuntu)\n' +
  '                brew install redis                  (macOS)\n' +
  '  or point REDIS_URL at a running server, e.g. REDIS_URL=redis://127.0.0.1:6379';

/** Kills owned servers if the process exits without stopping them (a crash, process.exit). */
const liveChildren = new Set<ChildProcess>();
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const child of liveChildren) child.kill('SIGTERM');
  });
}

async function freeLoopbackPort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolvePort(port));
    });
  });
}

/** Resolves when the server answers PING with PONG. */
async function ping(port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((done) => {
    const socket = new Socket();
    const timer = setTimeout(() => {
      socket.destroy();
      done(false);
    }, timeoutMs);
    let reply = '';
    socket.on('data', (chunk) => {
      reply += chunk.toString('latin1');
      if (reply.includes('\r\n')) {
        clearTimeout(timer);
        socket.destroy();
        done(reply.startsWith('+PONG'));
      }
    });
    socket.on('error', () => {
      clearTimeout(timer);
      socket.destroy();
      done(false);
    });
    socket.connect(port, '127.0.0.1', () => socket.write('PING\r\n'));
  });
}

/**
 * Uses REDIS_URL when given; otherwise starts a private redis-server on a free loopback port, with
 * AOF persistence in `dataDir`, and stops it on `stop()` or process exit.
 */
export async function startRedis(options: RedisLauncherOptions): Promise<RedisHandle> {
  if (options.url !== undefined) {
    return { url: options.url, owned: false, stop: async () => {} };
  }
  const dataDir = resolve(options.dataDir);
  await mkdir(dataDir, { recursive: true });
  let lastError: unknown;
  // A free port can be taken between probing and binding; try a few.
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      return await launch(options, dataDir, options.port ?? (await freeLoopbackPort()));
    } catch (error) {
      if (error instanceof CodedError && error.code === ErrorCode.RedisMissing) throw error;
      lastError = error;
    }
  }
  throw new CodedError(ErrorCode.Redis, `could not start redis-server: ${String(lastError)}`, {
    cause: lastError,
  });
}

async function launch(options: RedisLauncherOptions, dataDir: string, port: number): Promise<RedisHandle> {
  const args = [
    '--port',
    String(port),
    '--bind',
    '127.0.0.1',
    '--dir',
    dataDir,
    '--appendonly',
    'yes',
    '--appendfsync',
    'everysec',
    '--save',
    '',
    '--daemonize',
    'no',
    // BullMQ requires keys never be evicted.
    '--maxmemory-policy',
    'noeviction',
  ];
  const child = spawn(options.binary ?? 'redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-4000);
  });
  child.stderr?.on('data', (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-4000);
  });
  const exited = new Promise<{ code: number | null; error?: NodeJS.ErrnoException }>((done) => {
    child.once('error', (error: NodeJS.ErrnoException) => done({ code: null, error }));
    child.once('exit', (code) => done({ code }));
  });

  const deadline = Date.now() + (options.startTimeoutMs ?? 15_000);
  let ready = false;
  let early: { code: number | null; error?: NodeJS.ErrnoException } | undefined;
  void exited.then((r) => {
    early = r;
  });
  while (!ready && early === undefined && Date.now() < deadline) {
    // Ours must say it is ready: a PING alone may be answered by another server on that port (one that
    // took it while ours could not bind), which would hand the caller someone else's Redis.
    ready = /Ready to accept connections/u.test(output) && (await ping(port, 500));
    if (!ready) await new Promise((r) => setTimeout(r, 50));
  }
  if (early !== undefined) {
    if (early.error?.code === 'ENOENT') {
      throw new CodedError(ErrorCode.RedisMissing, REDIS_MISSING_MESSAGE);
    }
    throw new CodedError(ErrorCode.Redis, `redis-server exited (code ${early.code}): ${output.trim()}`);
  }
  if (!ready) {
    child.kill('SIGKILL');
    throw new CodedError(
      ErrorCode.Redis,
      `redis-server did not answer within the start timeout: ${output.trim()}`,
    );
  }
  installExitHook();
  liveChildren.add(child);
  options.log?.(`redis-server started on 127.0.0.1:${port} (data in ${dataDir})`);
  let stopping: Promise<void> | undefined;
  return {
    url: `redis://127.0.0.1:${port}`,
    owned: true,
    pid: child.pid,
    stop: () => {
      stopping ??= (async () => {
        if (early === undefined) {
          child.kill('SIGTERM');
          const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
          await exited;
          clearTimeout(timer);
        }
        liveChildren.delete(child);
      })();
      return stopping;
    },
  };
}
