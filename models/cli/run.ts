import { randomInt } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { CodedError, isUserError } from '../../core/errors.ts';
import {
  GENERATOR_KINDS,
  type GeneratorKind,
  isSamplerName,
  SAMPLERS,
  type SamplerName,
} from '../../core/samplers.ts';
import { MAX_SEED } from '../../core/seeds.ts';
import { ensureDemoModel } from '../demo/index.ts';
import type { StepProgress } from '../engine.ts';
import { initImageSize } from '../init-image.ts';
import { loadModel } from '../loader.ts';
import { DEFAULT_STRENGTH } from '../pipeline/img2img.ts';
import { loadEngine } from '../pipeline.ts';
import { encodePng, formatParameters } from '../png.ts';
import { EXECUTION_PROVIDERS, type ExecutionProviderName, isExecutionProviderName } from '../providers.ts';
import { modelsCommand } from './models-command.ts';

/**
 * The `imagine` command line: generate, tokenize, models download/list. Takes its environment as a
 * parameter; main.ts is the only place that reads process.env.
 */

export interface CliEnv {
  /** Where models are downloaded and the demo model is built. @defaultValue `./data/models` */
  readonly MODELS_DIR?: string | undefined;
  readonly HF_TOKEN?: string | undefined;
  readonly HF_ENDPOINT?: string | undefined;
}

export interface CliOutput {
  write(text: string): unknown;
  readonly isTTY?: boolean;
}

export interface CliIo {
  readonly stdout: CliOutput;
  readonly stderr: CliOutput;
}

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

export const USAGE = `Usage:
  imagine generate --prompt P [--prompt P2 ...] [--seed S [--seed S2 ...]] [options]
      --model DIR         SD 1.x, SD 2.x or SDXL ONNX folder (default: the demo model, built into $MODELS_DIR/demo)
      --negative N        negative prompt (default: none; --negative "" is an explicit empty one, which SDXL encodes)
      --scheduler NAME    ${SAMPLERS.join(' | ')} (default: pndm)
      --steps N           denoising steps (default: 25)
      --guidance G        classifier-free guidance scale; <= 1 turns it off (default: 7.5)
      --width W --height H  multiples of 8 (default: 512 x 512, or the --init-image's size rounded down to 8)
      --init-image FILE   image-to-image from a PNG, JPEG or WebP picture (resized to --width/--height if given)
      --strength S        with --init-image: share of the schedule run, above 0 and at most 1 (default: 0.8)
      --out DIR           writes DIR/0.png, DIR/1.png, ... (default: ./out)
      --generator KIND    cpu | cuda: which torch generator the seeds reproduce (default: cpu)
      --ep NAME           ${EXECUTION_PROVIDERS.join(' | ')} (default: cpu)
      --device-id N       GPU for --ep cuda (default: 0)
      --threads N         onnxruntime threads, 0 = one per core (default: 0)
      --safety-checker    run the model's safety checker (flagged images come out black)
    Image k uses prompt k mod #prompts and seed k mod #seeds; max(#prompts, #seeds) images in one batch.
    Without --seed, one random seed is drawn and printed.
  imagine tokenize [--model DIR] TEXT
      prints the 77 CLIP token ids as a JSON array on the last line
  imagine models download NAME|REPO [--revision R] [--dir D]
      NAME: a catalogue entry (see models list; writes its defaults to imagine.json); REPO: owner/name
  imagine models list [--dir D]
      each model folder's family, type, size on disk and defaults, then the catalogue entries not downloaded
  imagine inspect [--model DIR]
      opens every session of a model folder and prints the inputs it found
Environment: MODELS_DIR (default ./data/models), HF_TOKEN, HF_ENDPOINT.
`;

class UsageError extends Error {}

function usage(message: string): never {
  throw new UsageError(message);
}

function parseIntArg(
  name: string,
  value: string | undefined,
  min: number,
  max: number,
  fallback: number,
): number {
  if (value === undefined) return fallback;
  if (!/^\d+$/.test(value.trim())) usage(`--${name} must be a whole number, got "${value}"`);
  const n = Number(value.trim());
  if (n < min || n > max) usage(`--${name} must be between ${min} and ${max}, got ${n}`);
  return n;
}

function parseFloatArg(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value.trim());
  if (value.trim() === '' || !Number.isFinite(n)) usage(`--${name} must be a number, got "${value}"`);
  return n;
}

function parseSeed(value: string): number {
  const v = value.trim();
  if (!/^\d+$/.test(v)) usage(`--seed must be a whole number from 0 to ${MAX_SEED}, got "${value}"`);
  const n = Number(v);
  if (n > MAX_SEED) usage(`--seed must be a whole number from 0 to ${MAX_SEED}, got ${value}`);
  return n;
}

function modelsDir(env: CliEnv): string {
  return env.MODELS_DIR !== undefined && env.MODELS_DIR.trim() !== '' ? env.MODELS_DIR : './data/models';
}

async function resolveModelDir(flag: string | undefined, env: CliEnv, io: CliIo): Promise<string> {
  if (flag !== undefined) return flag;
  const dir = path.join(modelsDir(env), 'demo');
  io.stderr.write(
    `No --model given: using the demo model in ${dir} (synthetic images, not Stable Diffusion).\n`,
  );
  await ensureDemoModel(dir);
  return dir;
}

function stepLine(p: StepProgress): string {
  const width = 30;
  const filled = Math.round((p.step / p.total) * width);
  const bar = `${'#'.repeat(filled)}${'.'.repeat(width - filled)}`;
  return `\r[${bar}] step ${p.step}/${p.total}  ${(p.elapsedMs / 1000).toFixed(1)}s`;
}

/** `--init-image` read and sized (diffusers' default: its own size rounded down to 8), with its strength. */
async function readInitImage(
  file: string | undefined,
  strengthArg: string | undefined,
): Promise<{ bytes: Uint8Array; width: number; height: number; strength: number } | null> {
  if (file === undefined) {
    if (strengthArg !== undefined) usage('--strength needs an --init-image');
    return null;
  }
  const strength = parseFloatArg('strength', strengthArg, DEFAULT_STRENGTH);
  if (!(strength > 0 && strength <= 1)) usage(`--strength must be above 0 and at most 1, got ${strength}`);
  let bytes: Uint8Array;
  try {
    bytes = new Uint8Array(await readFile(file));
  } catch (error) {
    usage(`cannot read --init-image ${file}: ${(error as Error).message}`);
  }
  return { bytes, strength, ...(await initImageSize(bytes, 8)) };
}

async function generate(args: readonly string[], env: CliEnv, io: CliIo): Promise<number> {
  const { values, positionals } = parseArgs({
    args: [...args],
    allowPositionals: true,
    strict: true,
    options: {
      model: { type: 'string' },
      prompt: { type: 'string', multiple: true },
      negative: { type: 'string' },
      seed: { type: 'string', multiple: true },
      scheduler: { type: 'string' },
      steps: { type: 'string' },
      guidance: { type: 'string' },
      width: { type: 'string' },
      height: { type: 'string' },
      out: { type: 'string' },
      generator: { type: 'string' },
      ep: { type: 'string' },
      'device-id': { type: 'string' },
      threads: { type: 'string' },
      'safety-checker': { type: 'boolean' },
      'init-image': { type: 'string' },
      strength: { type: 'string' },
    },
  });
  if (positionals.length > 0) usage(`unexpected argument "${positionals[0]}" (prompts go after --prompt)`);
  const prompts = values.prompt ?? [];
  if (prompts.length === 0) usage('generate needs at least one --prompt');
  const seeds = (values.seed ?? []).map(parseSeed);
  if (seeds.length === 0) seeds.push(randomInt(0, MAX_SEED));
  const scheduler = values.scheduler ?? 'pndm';
  if (!isSamplerName(scheduler))
    usage(`--scheduler must be one of ${SAMPLERS.join(', ')}; got "${scheduler}"`);
  const generator = values.generator ?? 'cpu';
  if (!(GENERATOR_KINDS as readonly string[]).includes(generator)) {
    usage(`--generator must be cpu or cuda, got "${generator}"`);
  }
  const ep = values.ep ?? 'cpu';
  if (!isExecutionProviderName(ep))
    usage(`--ep must be one of ${EXECUTION_PROVIDERS.join(', ')}; got "${ep}"`);
  const steps = parseIntArg('steps', values.steps, 1, 1000, 25);
  const guidance = parseFloatArg('guidance', values.guidance, 7.5);
  const init = await readInitImage(values['init-image'], values.strength);
  const width = parseIntArg('width', values.width, 8, 8192, init?.width ?? 512);
  const height = parseIntArg('height', values.height, 8, 8192, init?.height ?? 512);
  if (width % 8 !== 0 || height % 8 !== 0)
    usage(`--width and --height must be multiples of 8, got ${width}x${height}`);
  const threads = parseIntArg('threads', values.threads, 0, 1024, 0);
  const deviceId = parseIntArg('device-id', values['device-id'], 0, 64, 0);
  const outDir = values.out ?? './out';
  const count = Math.max(prompts.length, seeds.length);
  const batchPrompts = Array.from({ length: count }, (_, k) => prompts[k % prompts.length]!);
  const batchSeeds = Array.from({ length: count }, (_, k) => seeds[k % seeds.length]!);

  const modelDir = await resolveModelDir(values.model, env, io);
  const engine = await loadEngine(modelDir, {
    executionProvider: ep as ExecutionProviderName,
    deviceId,
    intraOpThreads: threads,
    generator: generator as GeneratorKind,
    safetyChecker: values['safety-checker'] === true,
  });
  try {
    const tty = io.stderr.isTTY === true;
    let lastLen = 0;
    const result = await engine.generate(
      {
        prompts: batchPrompts,
        negative: values.negative ?? '',
        // `--negative ""` is an explicit empty negative prompt; SDXL encodes it instead of zeros.
        negativeGiven: values.negative !== undefined,
        seeds: batchSeeds,
        scheduler: scheduler as SamplerName,
        steps,
        guidance,
        width,
        height,
        generator: generator as GeneratorKind,
        ...(init === null ? {} : { initImage: init.bytes, strength: init.strength }),
      },
      tty
        ? {
            onStep: (p) => {
              const line = stepLine(p);
              lastLen = line.length;
              io.stderr.write(line);
            },
          }
        : {},
    );
    if (tty && lastLen > 0) io.stderr.write('\n');
    await mkdir(outDir, { recursive: true });
    for (const [k, image] of result.images.entries()) {
      const parameters = formatParameters({
        prompt: image.prompt,
        negative: values.negative ?? '',
        steps,
        sampler: scheduler as SamplerName,
        guidance,
        seed: image.seed,
        width,
        height,
        model: engine.info.name,
        generator: result.generator,
        ...(init === null ? {} : { strength: init.strength }),
      });
      const file = path.join(outDir, `${k}.png`);
      await writeFile(file, await encodePng(image, parameters));
      const flags = image.nsfw === true ? '  [flagged by the safety checker: blacked out]' : '';
      io.stdout.write(`${file}  seed ${image.seed}  ${JSON.stringify(image.prompt)}${flags}\n`);
      const dropped = result.truncatedTokens[k] ?? 0;
      if (dropped > 0) {
        io.stderr.write(
          `warning: prompt of image ${k} is over CLIP's 77 tokens; ${dropped} tokens were dropped\n`,
        );
      }
    }
    if (result.negativeTruncatedTokens > 0) {
      io.stderr.write(
        `warning: negative prompt is over CLIP's 77 tokens; ${result.negativeTruncatedTokens} tokens were dropped\n`,
      );
    }
    const t = result.timings;
    const mean = t.stepMs.length > 0 ? t.stepMs.reduce((a, b) => a + b, 0) / t.stepMs.length : 0;
    io.stderr.write(
      `${result.images.length} image(s) in ${(t.totalMs / 1000).toFixed(2)}s (${t.stepMs.length} steps, ` +
        `${mean.toFixed(1)} ms/step, ${engine.info.executionProvider})${engine.info.demo ? ' — demo model' : ''}\n`,
    );
    return EXIT_OK;
  } finally {
    await engine.close();
  }
}

async function tokenize(args: readonly string[], env: CliEnv, io: CliIo): Promise<number> {
  const { values, positionals } = parseArgs({
    args: [...args],
    allowPositionals: true,
    strict: true,
    options: { model: { type: 'string' } },
  });
  if (positionals.length !== 1) usage('tokenize takes exactly one TEXT argument (quote it)');
  const dir = await resolveModelDir(values.model, env, io);
  // Only the tokenizer is needed; loadModel would open every session, so read the tokenizer alone.
  const { ClipTokenizer } = await import('../tokenizer.ts');
  const tokenizer = await ClipTokenizer.fromModelDir(dir);
  const encoding = tokenizer.encode(positionals[0]!);
  io.stderr.write(
    `${encoding.tokenCount} tokens including BOS/EOS` +
      (encoding.truncatedTokens > 0 ? `; ${encoding.truncatedTokens} dropped (77-token window)` : '') +
      '\n',
  );
  io.stdout.write(`${JSON.stringify(Array.from(encoding.ids))}\n`);
  return EXIT_OK;
}

/** Checks a model folder without generating: opens every session and prints what it found. */
async function inspect(args: readonly string[], env: CliEnv, io: CliIo): Promise<number> {
  const { values } = parseArgs({ args: [...args], strict: true, options: { model: { type: 'string' } } });
  const dir = await resolveModelDir(values.model, env, io);
  const model = await loadModel(dir);
  try {
    const u = model.unet;
    io.stdout.write(
      `${JSON.stringify(
        {
          dir: model.dir,
          name: model.name,
          demo: model.demo,
          dtype: model.dtype,
          family: model.family,
          defaults: model.defaults,
          textEncoder: { inputIds: model.textEncoder.inputIds, output: model.textEncoder.output },
          ...(model.second === null
            ? {}
            : {
                textEncoders: [model.textEncoder, model.second.textEncoder].map((te) => ({
                  inputIds: te.inputIds,
                  penultimate: te.penultimate,
                  textEmbeds: te.textEmbeds,
                })),
                forceZerosForEmptyPrompt: model.forceZerosForEmptyPrompt,
              }),
          unet: {
            sample: u.sample,
            timestep: u.timestep,
            encoderHiddenStates: u.encoderHiddenStates,
            ...(u.textEmbeds === null ? {} : { textEmbeds: u.textEmbeds }),
            ...(u.timeIds === null ? {} : { timeIds: u.timeIds }),
            output: u.output,
          },
          vaeDecoder: { latent: model.vaeDecoder.latent, output: model.vaeDecoder.output },
          vaeScalingFactor: model.vaeScalingFactor,
        },
        null,
        2,
      )}\n`,
    );
  } finally {
    await model.close();
  }
  return EXIT_OK;
}

/** Runs one CLI invocation; returns the exit code. Never calls process.exit. */
export async function runCli(argv: readonly string[], env: CliEnv, io: CliIo): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case 'generate':
        return await generate(rest, env, io);
      case 'tokenize':
        return await tokenize(rest, env, io);
      case 'models':
        return await modelsCommand(rest, {
          modelsDir: modelsDir(env),
          token: env.HF_TOKEN,
          endpoint: env.HF_ENDPOINT,
          stdout: io.stdout,
          stderr: io.stderr,
          usage,
        });
      case 'inspect':
        return await inspect(rest, env, io);
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        io.stdout.write(USAGE);
        return command === undefined ? EXIT_USAGE : EXIT_OK;
      default:
        usage(`unknown command "${command}"`);
    }
  } catch (error) {
    if (error instanceof UsageError || (error instanceof TypeError && 'code' in error && isArgError(error))) {
      io.stderr.write(`imagine: ${error.message}\n\n${USAGE}`);
      return EXIT_USAGE;
    }
    if (isUserError(error)) {
      io.stderr.write(`imagine: ${error.message}\n`);
      return EXIT_USAGE;
    }
    if (error instanceof CodedError) {
      io.stderr.write(`imagine: ${error.message} [${error.code}]\n`);
      return EXIT_FAILURE;
    }
    io.stderr.write(`imagine: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    return EXIT_FAILURE;
  }
}

/** node:util parseArgs errors (unknown option, missing value, ...). */
function isArgError(error: TypeError): boolean {
  const code = (error as TypeError & { code?: unknown }).code;
  return typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS');
}
