import { readdirSync, readFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ErrorCode, somethingWentWrong, toPublicError } from '../../core/errors.ts';
import { httpStatusOf, retryAfterSecondsOf } from '../../core/http-status.ts';

const repoRoot = resolve(import.meta.dirname, '..', '..');
const codes = Object.values(ErrorCode);

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return entry.name === 'node_modules' ? [] : sourceFiles(path);
    return entry.name.endsWith('.ts') ? [path] : [];
  });
}

describe('error codes', () => {
  it('every code has an HTTP status; internal codes are 5xx, user codes 4xx or 503', () => {
    for (const code of codes) {
      const status = httpStatusOf(code);
      expect(status, code).toBeGreaterThanOrEqual(400);
      expect(status, code).toBeLessThan(600);
    }
    expect(httpStatusOf(ErrorCode.InvalidRequest)).toBe(400);
    expect(httpStatusOf(ErrorCode.Inference)).toBe(500);
    expect(httpStatusOf(ErrorCode.Redis)).toBe(503);
  });

  it('a Retry-After exactly for 429 and 503; the error’s own hint wins, rounded up, at least 1 s', () => {
    for (const code of codes) {
      const retry = retryAfterSecondsOf(code);
      const temporary = httpStatusOf(code) === 429 || httpStatusOf(code) === 503;
      expect(retry !== undefined, code).toBe(temporary);
      // A hint never adds a Retry-After to a code not worth retrying as it is.
      expect(retryAfterSecondsOf(code, 7) !== undefined, code).toBe(temporary);
    }
    expect(retryAfterSecondsOf(ErrorCode.QueueFull, 2.1)).toBe(3);
    expect(retryAfterSecondsOf(ErrorCode.RateLimited, 0)).toBe(1);
  });

  it('every E_ code written in the source is a member of the enum, and only core/errors.ts spells one out', () => {
    const strays: string[] = [];
    for (const layer of ['core', 'models', 'queue', 'bots']) {
      for (const path of sourceFiles(join(repoRoot, layer))) {
        const file = relative(repoRoot, path);
        if (file === join('core', 'errors.ts')) continue;
        for (const match of readFileSync(path, 'utf8').matchAll(/['"`](E_[A-Z_]+)['"`]/gu)) {
          const known = (codes as string[]).includes(match[1] ?? '');
          strays.push(`${file}: ${match[0]}${known ? ' (use ErrorCode)' : ' (not in ErrorCode)'}`);
        }
      }
    }
    expect(strays).toEqual([]);
  });

  it('an internal error shows the one "something went wrong" text, with its id', () => {
    const shown = toPublicError(new Error('disk on fire'));
    expect(shown.message).toBe(somethingWentWrong(shown.errorId));
    expect(shown.message).toContain(`(error id ${shown.errorId})`);
    expect(shown.message).not.toContain('disk on fire');
  });
});
