import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';

/** The repository root, where the CLI tests run the bin from. */
export const ROOT = path.resolve(import.meta.dirname, '../..');
/** The real `imagine` bin. */
export const BIN = path.join(ROOT, 'models/cli/bin.js');

const exec = promisify(execFile);

export interface Run {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs the real `imagine` bin in a child process; a non-zero exit is returned, not thrown. */
export async function imagine(args: readonly string[], env: Record<string, string> = {}): Promise<Run> {
  try {
    const { stdout, stderr } = await exec(process.execPath, [BIN, ...args], {
      cwd: ROOT,
      env: { ...process.env, ...env },
      timeout: 120_000,
      maxBuffer: 16 * 1024 * 1024,
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code?: number; stdout?: string; stderr?: string };
    if (typeof e.code !== 'number') throw error;
    return { code: e.code, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

/** Runs the real `imagine` bin and expects it to succeed: a failure throws with its code and stderr. */
export async function imagineOk(args: readonly string[]): Promise<{ stdout: string; stderr: string }> {
  return exec(process.execPath, [BIN, ...args], { cwd: ROOT, timeout: 120_000 }).catch(
    (error: { stderr?: string; code?: number }) => {
      throw new Error(`imagine exited ${error.code}: ${error.stderr}`);
    },
  );
}
