import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { checkLayers, formatViolation } from './layers.ts';

const repoRoot = resolve(import.meta.dirname, '..', '..');

describe('layer rule (core ← models ← queue ← bots)', () => {
  it('holds for every source file in the repository', () => {
    // Listed in full so a failure names each file, line and import.
    expect(checkLayers(repoRoot).map(formatViolation)).toEqual([]);
  });

  describe('on a fixture tree', () => {
    const root = mkdtempSync(join(tmpdir(), 'layers-'));
    afterAll(() => rmSync(root, { recursive: true, force: true }));
    const write = (file: string, text: string) => {
      mkdirSync(dirname(join(root, file)), { recursive: true });
      writeFileSync(join(root, file), text);
    };

    write(
      'core/ok.ts',
      [
        "import { z } from 'zod';",
        "import { createHash } from 'node:crypto';",
        "import { a } from './other.ts';",
        'export { z, createHash, a };',
      ].join('\n'),
    );
    write(
      'core/bad.ts',
      [
        "import { readFileSync } from 'node:fs';",
        "import {\n  startWorker,\n} from '../queue/worker.ts';",
        "export type { Engine } from '../models/engine.ts';",
        "import pino from 'pino';",
        "const later = () => import('node:child_process');",
      ].join('\n'),
    );
    write(
      'models/bad.ts',
      "import type { Jobs } from '../queue/types.ts';\nimport { x } from '../bots/app.ts';",
    );
    write('models/cli/main.ts', "import { startWorker } from '../../queue/worker.ts';");
    write('queue/bad.ts', "let s: import('../bots/surface.ts').ChatSurface;");
    write('queue/bench/run.ts', "import { createApp } from '../../bots/app.ts';");
    write(
      'bots/web/bad.ts',
      [
        "import { createJobs } from '../../queue/index.ts';",
        "import { loadEngine } from '../../models/loader.ts';",
        "import type { GridRecord } from '../../queue/types.ts';",
        "import { FakeJobs } from '../../test/bots/fake-jobs.ts';",
      ].join('\n'),
    );
    write('bots/service.ts', "import { startWorker } from '../queue/worker.ts';");
    write('bots/main.ts', "import { loadEngine } from '../models/loader.ts';");

    it('names each violating file, line and import, and passes the rest', () => {
      expect(checkLayers(root).map(formatViolation)).toEqual([
        "bots/service.ts:1 imports '../queue/worker.ts': bots/ imports queue/ only through its public surface queue/index.ts",
        "bots/web/bad.ts:2 imports '../../models/loader.ts': a chat adapter never imports models/",
        "bots/web/bad.ts:3 imports '../../queue/types.ts': bots/ imports queue/ only through its public surface queue/index.ts",
        "bots/web/bad.ts:4 imports '../../test/bots/fake-jobs.ts': source files never import test/",
        "core/bad.ts:1 imports 'node:fs': core does no I/O: of node's builtins it may import only node:assert, node:buffer, node:crypto, node:path, node:querystring, node:string_decoder, node:url, node:util",
        "core/bad.ts:2 imports '../queue/worker.ts': core may import only core/",
        "core/bad.ts:5 imports '../models/engine.ts': core may import only core/",
        "core/bad.ts:6 imports 'pino': core imports only core/ and zod (write builtins as 'node:…')",
        "core/bad.ts:7 imports 'node:child_process': core does no I/O: of node's builtins it may import only node:assert, node:buffer, node:crypto, node:path, node:querystring, node:string_decoder, node:url, node:util",
        "models/bad.ts:1 imports '../queue/types.ts': models may import only core/, models/",
        "models/bad.ts:2 imports '../bots/app.ts': models may import only core/, models/",
        "queue/bad.ts:1 imports '../bots/surface.ts': queue may import only core/, models/, queue/",
      ]);
    });
  });
});
