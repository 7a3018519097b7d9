/**
 * The layer rule, checked on every import (issue 10 item 8). Layers, innermost first:
 *
 *   core/   pure domain: imports only core/, `zod`, and node builtins that do no I/O
 *   models/ the engine: imports core/ and models/ only (never queue/ or bots/)
 *   queue/  imports core/, models/ and queue/ (never bots/)
 *   bots/   imports everything, but reaches queue/ only through its public surface
 *           `queue/index.ts`; a chat adapter (bots/discord, bots/slack, bots/web) never imports models/
 *
 * Entry points (bots/app.ts, bots/main.ts, any bench/ folder, models/cli/) wire the layers
 * together and are exempt. No source file imports test/.
 *
 * Every specifier is read from the syntax tree (the TypeScript parser), so multi-line imports,
 * `export … from`, `import type`, `import('…')` calls and `import('…')` types all count.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import ts from 'typescript';

export const SOURCE_LAYERS = ['core', 'models', 'queue', 'bots'] as const;
type Layer = (typeof SOURCE_LAYERS)[number];

/** Which layers each layer may import from (the order of the stack). */
const ALLOWED_LAYERS: Record<Layer, readonly string[]> = {
  core: ['core'],
  models: ['core', 'models'],
  queue: ['core', 'models', 'queue'],
  bots: ['core', 'models', 'queue', 'bots'],
};

/** Packages core may import: validation only; anything else is I/O or a framework. */
const CORE_PACKAGES = new Set(['zod']);

/** Node builtins with no I/O (pure computation), the only ones core may import. */
const PURE_NODE_BUILTINS = new Set([
  'assert',
  'buffer',
  'crypto',
  'path',
  'querystring',
  'string_decoder',
  'url',
  'util',
]);

const CHAT_ADAPTERS = ['bots/discord/', 'bots/slack/', 'bots/web/'];
const QUEUE_SURFACE = 'queue/index.ts';

/** Files that wire the layers together and may import anything. */
export function isEntryPoint(file: string): boolean {
  return (
    file === 'bots/app.ts' ||
    file === 'bots/main.ts' ||
    file.startsWith('models/cli/') ||
    file.split('/').slice(0, -1).includes('bench')
  );
}

export interface Violation {
  /** Repository-relative path of the importing file, with forward slashes. */
  file: string;
  /** The specifier as written. */
  specifier: string;
  /** 1-based line of the import. */
  line: number;
  /** Which rule it breaks. */
  rule: string;
}

export function formatViolation(v: Violation): string {
  return `${v.file}:${v.line} imports '${v.specifier}': ${v.rule}`;
}

/** Every import/export-from specifier in one source text, with its line. */
export function specifiersOf(fileName: string, text: string): { specifier: string; line: number }[] {
  const source = ts.createSourceFile(fileName, text, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS);
  const found: { specifier: string; line: number }[] = [];
  const add = (node: ts.Node, literal: ts.Node | undefined) => {
    if (literal && ts.isStringLiteralLike(literal)) {
      found.push({
        specifier: literal.text,
        line: source.getLineAndCharacterOfPosition(node.getStart(source)).line + 1,
      });
    }
  };
  const visit = (node: ts.Node) => {
    if (ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) {
      add(node, node.moduleSpecifier);
    } else if (ts.isImportEqualsDeclaration(node) && ts.isExternalModuleReference(node.moduleReference)) {
      add(node, node.moduleReference.expression);
    } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) {
      add(node, node.arguments[0]);
    } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument)) {
      add(node, node.argument.literal);
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found;
}

/** The rule a single import breaks, or undefined. `file` is repository-relative with '/'. */
export function ruleBroken(file: string, specifier: string): string | undefined {
  const layer = file.split('/')[0] as Layer;
  if (!SOURCE_LAYERS.includes(layer) || isEntryPoint(file)) return undefined;

  if (!specifier.startsWith('.')) {
    if (layer !== 'core') return undefined;
    const builtin = specifier.startsWith('node:') ? specifier.slice('node:'.length) : undefined;
    if (builtin !== undefined) {
      return PURE_NODE_BUILTINS.has(builtin.split('/')[0] ?? '')
        ? undefined
        : `core does no I/O: of node's builtins it may import only ${[...PURE_NODE_BUILTINS].map((b) => `node:${b}`).join(', ')}`;
    }
    const pkg = specifier.startsWith('@')
      ? specifier.split('/').slice(0, 2).join('/')
      : specifier.split('/')[0];
    return pkg !== undefined && CORE_PACKAGES.has(pkg)
      ? undefined
      : `core imports only core/ and ${[...CORE_PACKAGES].join(', ')} (write builtins as 'node:…')`;
  }

  const target = join(dirname(file), specifier).split(sep).join('/');
  if (target.startsWith('..')) return `${layer} imports outside the repository`;
  const targetLayer = target.split('/')[0] ?? '';
  if (targetLayer === 'test') return 'source files never import test/';
  if (!ALLOWED_LAYERS[layer].includes(targetLayer)) {
    return `${layer} may import only ${ALLOWED_LAYERS[layer].map((l) => `${l}/`).join(', ')}`;
  }
  if (layer === 'bots' && targetLayer === 'queue' && target !== QUEUE_SURFACE) {
    return `bots/ imports queue/ only through its public surface ${QUEUE_SURFACE}`;
  }
  if (CHAT_ADAPTERS.some((prefix) => file.startsWith(prefix)) && targetLayer === 'models') {
    return 'a chat adapter never imports models/';
  }
  return undefined;
}

function tsFilesUnder(dir: string): string[] {
  let entries: import('node:fs').Dirent[];
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return [];
  }
  return entries.flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return entry.name === 'node_modules' ? [] : tsFilesUnder(path);
    return entry.isFile() && entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts') ? [path] : [];
  });
}

/** Every violation of the layer rule in the source folders under `root`, sorted by file and line. */
export function checkLayers(root: string): Violation[] {
  const absRoot = resolve(root);
  const violations: Violation[] = [];
  for (const layer of SOURCE_LAYERS) {
    for (const path of tsFilesUnder(join(absRoot, layer))) {
      const file = relative(absRoot, path).split(sep).join('/');
      for (const { specifier, line } of specifiersOf(file, readFileSync(path, 'utf8'))) {
        const rule = ruleBroken(file, specifier);
        if (rule !== undefined) violations.push({ file, specifier, line, rule });
      }
    }
  }
  return violations.sort((a, b) => a.file.localeCompare(b.file) || a.line - b.line);
}
