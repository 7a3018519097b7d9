import { parseArgs } from 'node:util';
import { formatDefaults } from '../defaults.ts';

/**
 * `imagine models download NAME|REPO` and `imagine models list`. The hub client is loaded only here:
 * generate and tokenize never need it.
 */

export interface ModelsCommandContext {
  /** $MODELS_DIR or its default. */
  readonly modelsDir: string;
  readonly token: string | undefined;
  readonly endpoint: string | undefined;
  readonly stdout: { write(text: string): unknown };
  readonly stderr: { write(text: string): unknown; readonly isTTY?: boolean };
  /** Throws the CLI's usage error. */
  readonly usage: (message: string) => never;
}

export async function modelsCommand(args: readonly string[], ctx: ModelsCommandContext): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === 'download') return download(rest, ctx);
  if (sub === 'list') return list(rest, ctx);
  return ctx.usage(
    sub === undefined ? 'models needs a subcommand: download or list' : `unknown models subcommand "${sub}"`,
  );
}

async function download(args: readonly string[], ctx: ModelsCommandContext): Promise<number> {
  const d = await import('../download/index.ts');
  const { values, positionals } = parseArgs({
    args: [...args],
    allowPositionals: true,
    strict: true,
    options: { revision: { type: 'string' }, dir: { type: 'string' } },
  });
  if (positionals.length !== 1) {
    ctx.usage(
      `models download takes one NAME from the catalogue (${d.CATALOG.map((e) => e.name).join(', ')}) ` +
        'or a REPO (owner/name of an ONNX Stable Diffusion export)',
    );
  }
  const target = positionals[0]!;
  const entry = target.includes('/') ? undefined : d.findCatalogEntry(target);
  if (!target.includes('/') && entry === undefined) throw d.unknownEntry(target);
  if (entry !== undefined && values.revision !== undefined) {
    ctx.usage(
      `--revision is for repo ids; the catalogue entry "${entry.name}" is pinned to ${entry.revision} ` +
        `(use ${entry.repo} --revision R for another)`,
    );
  }
  const tty = ctx.stderr.isTTY === true;
  const common = {
    dir: values.dir ?? ctx.modelsDir,
    token: ctx.token,
    endpoint: ctx.endpoint,
    onProgress: tty
      ? (p: import('../download/index.ts').DownloadProgress) =>
          ctx.stderr.write(`\r${d.formatProgressBar(p)}`)
      : undefined,
  };
  const result =
    entry === undefined
      ? await d.downloadModel({ ...common, repo: target, revision: values.revision })
      : await d.downloadCatalogEntry(entry, {
          ...common,
          warn: (message) => ctx.stderr.write(`${tty ? '\n' : ''}warning: ${message}\n`),
        });
  if (tty) ctx.stderr.write('\n');
  ctx.stderr.write(
    `${result.filesDownloaded.length} file(s), ${d.formatBytes(result.bytesDownloaded)} downloaded; ` +
      `${result.manifest.repo}@${result.manifest.commit ?? result.manifest.revision} is in ${result.dir}\n` +
      (entry === undefined
        ? ''
        : `Defaults (${formatDefaults(entry.defaults)}) written to ${result.dir}/imagine.json\n`) +
      `Try: imagine generate --model ${result.dir} --prompt "..."\n`,
  );
  ctx.stdout.write(`${result.dir}\n`);
  return 0;
}

async function list(args: readonly string[], ctx: ModelsCommandContext): Promise<number> {
  const d = await import('../download/index.ts');
  const { values, positionals } = parseArgs({
    args: [...args],
    allowPositionals: true,
    strict: true,
    options: { dir: { type: 'string' } },
  });
  if (positionals.length > 0) ctx.usage(`models list takes no arguments, got "${positionals[0]}"`);
  const models = await d.listModels(values.dir ?? ctx.modelsDir);
  // Tab-separated so scripts can cut columns; the header names them.
  ctx.stdout.write('NAME\tFAMILY\tTYPE\tSIZE\tDEFAULTS\tFOLDER\n');
  for (const m of models) {
    const state = m.complete ? '' : '  (incomplete)';
    const from = m.catalog === undefined ? '' : `  [catalogue: ${m.catalog}]`;
    const defaults = m.defaults === undefined ? '?' : formatDefaults(m.defaults);
    ctx.stdout.write(
      `${m.name}\t${m.family ?? '?'}\t${m.kind}\t${d.formatBytes(m.sizeBytes)}\t${defaults}\t${m.dir}${state}${from}\n`,
    );
    if (m.problem !== undefined) ctx.stderr.write(`warning: ${m.name}: ${m.problem}\n`);
  }
  const have = new Set(models.flatMap((m) => [m.repo, m.catalog]));
  for (const e of d.CATALOG) {
    if (have.has(e.repo) || have.has(e.name)) continue;
    ctx.stdout.write(
      `${e.name}\t${e.family}\t-\tnot downloaded\t${formatDefaults(e.defaults)}\t` +
        `imagine models download ${e.name}  (${e.repo}, ${e.approxDownload})\n`,
    );
  }
  if (models.length === 0) {
    ctx.stderr.write('No models downloaded yet. Try `imagine models download NAME` with a name above.\n');
  }
  return 0;
}
