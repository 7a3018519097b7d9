import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

/**
 * models/ grows by new files (a model family, a generation mode), not by longer ones: every source file
 * stays under 500 lines. Bench scripts are exempt, as the issue that set the limit says.
 */
const MAX_LINES = 500;
const ROOT = path.resolve(import.meta.dirname, '../../models');

async function sourceFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true });
  const nested = await Promise.all(
    entries.map(async (e) => {
      const full = path.join(dir, e.name);
      if (e.isDirectory()) return e.name === 'bench' ? [] : sourceFiles(full);
      return /\.(ts|js)$/u.test(e.name) ? [full] : [];
    }),
  );
  return nested.flat();
}

describe('models/ source files', () => {
  it(`are each under ${MAX_LINES} lines`, async () => {
    const files = await sourceFiles(ROOT);
    expect(files.length).toBeGreaterThan(10);
    const long: string[] = [];
    for (const file of files) {
      const lines = (await readFile(file, 'utf8')).split('\n').length;
      if (lines >= MAX_LINES) long.push(`${path.relative(ROOT, file)}: ${lines} lines`);
    }
    expect(long).toEqual([]);
  });
});
