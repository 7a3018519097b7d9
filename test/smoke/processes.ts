import { type ChildProcess, spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { configSchema } from '../../core/config.ts';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/**
 * The runner's environment with every setting of ours set empty, i.e. to its default: the runner's
 * own values can't leak in, nor can a developer's .env (a variable in the environment wins over
 * .env even when empty).
 */
export function cleanEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const key of Object.keys(configSchema.shape)) env[key] = '';
  return { ...env, ...extra };
}

/** `node --import tsx <ROOT>/bots/main.ts <role>` from any working directory (npm scripts run in ROOT). */
export function mainArgs(role: string): string[] {
  return [
    '--import',
    pathToFileURL(join(ROOT, 'node_modules/tsx/dist/loader.mjs')).href,
    join(ROOT, 'bots/main.ts'),
    role,
  ];
}

export interface Running {
  readonly child: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** Resolves with the first stdout JSON line whose `msg` is `msg` (or starts with it). */
  waitForLog(msg: string, timeoutMs?: number): Promise<Record<string, unknown>>;
  /** Resolves with exit code and signal, and how long after `since` it came. */
  exited(): Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>;
}

export function run(
  command: string,
  args: readonly string[],
  env: NodeJS.ProcessEnv,
  options: { readonly cwd?: string } = {},
): Running {
  // Its own process group, so a failed test can clean up everything it started (npm, node, redis-server).
  const child = spawn(command, [...args], {
    cwd: options.cwd ?? ROOT,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  let out = '';
  let err = '';
  child.stdout?.on('data', (c: Buffer) => {
    out += c.toString();
  });
  child.stderr?.on('data', (c: Buffer) => {
    err += c.toString();
  });
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal, at: Date.now() }));
  });
  return {
    child,
    stdout: () => out,
    stderr: () => err,
    exited: () => exit,
    waitForLog: async (msg, timeoutMs = 60_000) => {
      const deadline = Date.now() + timeoutMs;
      let exitedEarly = false;
      void exit.then(() => {
        exitedEarly = true;
      });
      while (Date.now() < deadline) {
        for (const line of out.split('\n')) {
          if (!line.startsWith('{')) continue;
          try {
            const parsed = JSON.parse(line) as Record<string, unknown>;
            if (typeof parsed.msg === 'string' && parsed.msg.startsWith(msg)) return parsed;
          } catch {
            // A partial line; read again later.
          }
        }
        if (exitedEarly) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      throw new Error(`no "${msg}" log line.\nstdout:\n${out.slice(-3000)}\nstderr:\n${err.slice(-3000)}`);
    },
  };
}

/** Pid of the redis-server listening on `port` (read from /proc), or undefined. */
export function redisPid(port: number): number | undefined {
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/u.test(entry)) continue;
    try {
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').join(' ');
      if (cmdline.startsWith('redis-server') && cmdline.includes(`:${port}`)) return Number(entry);
    } catch {
      // The process went away while we looked.
    }
  }
  return undefined;
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Kills what a failed test left running: the process group this test started, and nothing else. */
export function ensureStopped(running: Running | undefined): void {
  const pid = running?.child.pid;
  if (pid === undefined) return;
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // Already gone.
  }
}
