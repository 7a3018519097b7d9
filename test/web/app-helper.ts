import { randomInt } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { type App, type AppOptions, type Role, startApp } from '../../bots/app.ts';
import { createLogger } from '../../bots/logger.ts';
import { loadConfig } from '../../core/config.ts';

/**
 * The real application in-process (private redis-server, real queue, real demo model, real HTTP
 * server on 127.0.0.1), with its data in a temp folder and its logs captured.
 */
export interface TestApp {
  readonly app: App;
  readonly url: string;
  readonly dir: string;
  /** Every log line so far (JSON text). */
  logs(): string;
  stop(): Promise<void>;
}

/** The demo model is built once per machine here and reused by every test app. */
export const SHARED_MODELS_DIR = join(tmpdir(), 'imagine-test-models');

export async function startTestApp(
  env: Record<string, string> = {},
  role: Role = 'all',
  /** `engine`: another real engine than the demo model (e.g. tiny-sd with chosen safety flags). */
  extra: Pick<AppOptions, 'engine'> = {},
): Promise<TestApp> {
  const dir = await mkdtemp(join(tmpdir(), 'imagine-web-'));
  const config = loadConfig({
    REDIS_DATA_DIR: join(dir, 'redis'),
    MODELS_DIR: SHARED_MODELS_DIR,
    PORT: '0',
    WORKER_PORT: '0',
    LOG_LEVEL: 'debug',
    // Small default jobs keep the demo model fast; tests that need longer jobs ask with --steps.
    DEFAULT_STEPS: '4',
    ...env,
  });
  let text = '';
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      text += chunk.toString();
      done();
    },
  });
  const log = createLogger({ level: config.LOG_LEVEL, role, destination: sink });
  let app: App;
  try {
    app = await startApp({ role, config, log, ...extra });
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
  await app.workerReady;
  return {
    app,
    url: app.url,
    dir,
    logs: () => text,
    stop: async () => {
      await app.stop({ releaseNow: true });
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export interface JsonResponse<T = Record<string, unknown>> {
  readonly status: number;
  readonly headers: Headers;
  readonly body: T;
}

/** fetch with a JSON body answer (or `{}` when it has none). */
export async function call<T = Record<string, unknown>>(
  url: string,
  init: RequestInit & { json?: unknown } = {},
): Promise<JsonResponse<T>> {
  const { json, ...rest } = init;
  const headers = new Headers(rest.headers);
  if (json !== undefined) headers.set('content-type', 'application/json');
  const response = await fetch(url, {
    ...rest,
    headers,
    ...(json === undefined ? {} : { body: JSON.stringify(json) }),
  });
  const text = await response.text();
  let body: unknown = {};
  if (text !== '') {
    try {
      body = JSON.parse(text);
    } catch {
      body = { raw: text };
    }
  }
  return { status: response.status, headers: response.headers, body: body as T };
}

export interface Job {
  id: string;
  kind: string;
  status: string;
  position: number | null;
  progress: { step: number; total: number };
  prompts: string[];
  seeds: number[];
  settings: {
    negative: string;
    sampler: string;
    steps: number;
    guidance: number;
    width: number;
    height: number;
  };
  attempts: number;
  worker: string | null;
  error: { message: string; errorId?: string } | null;
  grid: string | null;
  images: string[];
  parent: { id: string; n: number | null } | null;
}

/** Polls `GET /api/jobs/:id` until the job is in one of `states`. */
export async function waitForJob(
  base: string,
  id: string,
  states: readonly string[] = ['done'],
  options: { timeoutMs?: number; headers?: Record<string, string> } = {},
): Promise<Job> {
  const deadline = Date.now() + (options.timeoutMs ?? 45_000);
  let last: JsonResponse<Job> | undefined;
  while (Date.now() < deadline) {
    last = await call<Job>(
      `${base}/api/jobs/${id}`,
      options.headers === undefined ? {} : { headers: options.headers },
    );
    if (last.status === 200 && states.includes(last.body.status)) return last.body;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`job ${id} did not reach ${states.join('/')}: last ${JSON.stringify(last?.body)}`);
}

/** Text chunks (`tEXt`) of a PNG, by keyword. */
export function pngTextChunks(png: Buffer): Map<string, string> {
  const chunks = new Map<string, string>();
  if (png.subarray(0, 8).toString('hex') !== '89504e470d0a1a0a') throw new Error('not a PNG');
  let offset = 8;
  while (offset + 8 <= png.length) {
    const length = png.readUInt32BE(offset);
    const type = png.subarray(offset + 4, offset + 8).toString('latin1');
    const data = png.subarray(offset + 8, offset + 8 + length);
    if (type === 'tEXt') {
      const nul = data.indexOf(0);
      chunks.set(data.subarray(0, nul).toString('latin1'), data.subarray(nul + 1).toString('latin1'));
    } else if (type === 'iTXt') {
      const nul = data.indexOf(0);
      // keyword\0 compressionFlag compressionMethod languageTag\0 translatedKeyword\0 text
      let rest = data.subarray(nul + 3);
      rest = rest.subarray(rest.indexOf(0) + 1);
      rest = rest.subarray(rest.indexOf(0) + 1);
      chunks.set(data.subarray(0, nul).toString('latin1'), rest.toString('utf8'));
    }
    offset += 12 + length;
  }
  return chunks;
}

/** Raw request, so bodies and headers can be as broken as a client can make them. */
export function raw(
  base: string,
  method: string,
  path: string,
  body?: string | Buffer,
  headers: Record<string, string> = {},
  /** Loopback source address to send from (per-address limits). @defaultValue the system's choice */
  localAddress?: string,
): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  const url = new URL(path, base);
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: url.hostname,
        port: url.port,
        path: path,
        method,
        headers: { ...headers },
        ...(localAddress === undefined ? {} : { localAddress }),
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => {
          text += c;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }));
      },
    );
    req.on('error', reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}

/** A random loopback source address other than 127.0.0.1 (Linux routes all of 127.0.0.0/8 to lo). */
export function loopbackAddress(): string {
  return `127.${randomInt(1, 255)}.${randomInt(0, 256)}.${randomInt(1, 255)}`;
}

/** GET `path` from a given local address; resolves with the status and the `Set-Cookie` headers. */
export function getFrom(
  base: string,
  path: string,
  localAddress: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; setCookie: string[]; body: string }> {
  const url = new URL(path, base);
  return new Promise((resolve, reject) => {
    const req = request(
      { host: url.hostname, port: url.port, path, method: 'GET', localAddress, headers },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => {
          text += c;
        });
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, setCookie: res.headers['set-cookie'] ?? [], body: text }),
        );
      },
    );
    req.on('error', reject);
    req.end();
  });
}

/**
 * A new browser: the identity cookie the playground issues to a first visit. Each comes from its own
 * loopback source address, so tests that need many people stay within the per-address issue limit.
 */
export async function newUser(base: string): Promise<{ cookie: string }> {
  const res = await getFrom(base, '/api/info', loopbackAddress());
  const issued = res.setCookie.find((c) => c.startsWith('imagine_uid='));
  if (res.status !== 200 || issued === undefined) throw new Error(`no identity issued (${res.status})`);
  return { cookie: issued.split(';')[0]! };
}
