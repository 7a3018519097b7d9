import {
  type Dirent,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

/**
 * The code grows by new files (a model family, a button, a route), not by longer ones: every source
 * file in the layers is under 500 lines. Tests, bench scripts and the playground's static assets are
 * exempt, as the issue that set the limit says.
 */
const MAX_LINES = 500;
const LAYERS = ['core', 'models', 'queue', 'bots'] as const;
/** Folders whose files are not held to the limit, wherever they sit in a layer. */
const EXEMPT_DIRS = new Set(['bench', 'static', 'node_modules']);

function sourceFiles(dir: string): string[] {
  let entries: Dirent[];
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return [];
  }
  return entries.flatMap((e) => {
    const full = join(dir, e.name);
    if (e.isDirectory()) return EXEMPT_DIRS.has(e.name) ? [] : sourceFiles(full);
    return /\.(ts|js|mjs|cjs)$/u.test(e.name) ? [full] : [];
  });
}

/** Each source file of the layers under `root` at or over the limit, as "path: N lines". */
function longFiles(root: string): { checked: number; long: string[] } {
  const files = LAYERS.flatMap((layer) => sourceFiles(join(root, layer)));
  const long: string[] = [];
  for (const file of files) {
    // Counted as the models/ check before it counted them (split on newlines), so no file gains a line.
    const lines = readFileSync(file, 'utf8').split('\n').length;
    if (lines >= MAX_LINES) long.push(`${relative(root, file)}: ${lines} lines`);
  }
  return { checked: files.length, long };
}

describe(`source files of ${LAYERS.join(', ')}`, () => {
  it(`are each under ${MAX_LINES} lines (tests, bench scripts and static assets exempt)`, () => {
    const { checked, long } = longFiles(resolve(import.meta.dirname, '..', '..'));
    expect(checked).toBeGreaterThan(50);
    // Listed in full so a failure names each file and its length.
    expect(long).toEqual([]);
  });

  describe('on a fixture tree', () => {
    const root = mkdtempSync(join(tmpdir(), 'file-size-'));
    afterAll(() => rmSync(root, { recursive: true, force: true }));
    const write = (file: string, lines: number) => {
      mkdirSync(dirname(join(root, file)), { recursive: true });
      writeFileSync(join(root, file), 'const x = 1;\n'.repeat(lines));
    };
    write('bots/slack/long.ts', MAX_LINES);
    write('core/short.ts', MAX_LINES - 2);
    write('queue/nested/deep/long.js', MAX_LINES + 100);
    write('models/bench/long.ts', MAX_LINES * 2);
    write('bots/web/static/app.js', MAX_LINES * 2);
    write('test/long.test.ts', MAX_LINES * 2);
    write('bots/notes.md', MAX_LINES * 2);

    it('names every long source file in a layer, and only those', () => {
      const { checked, long } = longFiles(root);
      expect(checked).toBe(3);
      expect(long.sort()).toEqual([
        `bots/slack/long.ts: ${MAX_LINES + 1} lines`,
        `queue/nested/deep/long.js: ${MAX_LINES + 101} lines`,
      ]);
    });
  });
});
