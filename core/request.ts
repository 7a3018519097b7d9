import type { RequestLimits } from './config.ts';
import { ErrorCode, UserError } from './errors.ts';
import { parseStrength } from './image-prompt.ts';
import { DEFAULT_MODEL_NAME, unknownModelError } from './models.ts';
import { isSamplerName, SAMPLERS, type SamplerName } from './samplers.ts';
import { MAX_SEED } from './seeds.ts';

/** A validated `/imagine` request, the same whichever surface it came from. */
export interface ImagineRequest {
  readonly prompt: string;
  /** Empty string when none was given. */
  readonly negative: string;
  /** Base seed, when the user chose one; otherwise a random one is drawn at submit. */
  readonly seed?: number;
  readonly steps: number;
  readonly guidance: number;
  readonly sampler: SamplerName;
  readonly width: number;
  readonly height: number;
  /** The served model asked for (`--model`); absent: the deployment's default (see `modelOf`). */
  readonly model?: string;
  /** `--strength` of an image prompt, when given (the service refuses it without an image). */
  readonly strength?: number;
}

/** Typed options, as Discord's slash-command options deliver them (all raw, all optional but prompt). */
export interface ImagineOptions {
  readonly prompt: string;
  readonly negative?: string | undefined;
  readonly seed?: number | string | undefined;
  readonly steps?: number | string | undefined;
  readonly guidance?: number | string | undefined;
  readonly sampler?: string | undefined;
  /** Aspect ratio `W:H`, e.g. `3:2`. */
  readonly aspect?: string | undefined;
  /** Size `WxH`, e.g. `640x448`. */
  readonly size?: string | undefined;
  readonly width?: number | string | undefined;
  readonly height?: number | string | undefined;
  /** Served model name (Discord offers them as choices). */
  readonly model?: string | undefined;
  /** Image prompt strength, (0, 1]. */
  readonly strength?: number | string | undefined;
}

export type Result<T, E = UserError> = { ok: true; value: T } | { ok: false; error: E };

export const MAX_PROMPT_CHARS = 1000;
const MIN_SIDE = 64;
const MAX_SIDE = 4096;
const MAX_GUIDANCE = 30;

/** Inline flags of the text form, with their aliases. */
const FLAG_ALIASES: Readonly<Record<string, FlagName>> = {
  no: 'negative',
  negative: 'negative',
  neg: 'negative',
  seed: 'seed',
  steps: 'steps',
  cfg: 'guidance',
  guidance: 'guidance',
  sampler: 'sampler',
  scheduler: 'sampler',
  ar: 'aspect',
  aspect: 'aspect',
  size: 'size',
  model: 'model',
  strength: 'strength',
};
type FlagName =
  | 'negative'
  | 'seed'
  | 'steps'
  | 'guidance'
  | 'sampler'
  | 'aspect'
  | 'size'
  | 'model'
  | 'strength';

export const FLAG_HELP =
  '--no <negative prompt>, --seed <0-4294967295>, --steps <n>, --cfg <0-30>, ' +
  `--sampler <${SAMPLERS.join('|')}>, --ar <w:h>, --size <WxH>, --model <name>, --strength <0-1>`;

function fail<T>(message: string, code: ErrorCode = ErrorCode.InvalidRequest): Result<T> {
  return { ok: false, error: new UserError(code, message) };
}

interface Token {
  readonly text: string;
  readonly start: number;
  readonly end: number;
  readonly quoted: boolean;
}

const OPEN_QUOTES: Readonly<Record<string, string>> = { '"': '"', '“': '”', '„': '“', '«': '»' };

/** Splits on whitespace; a token that opens a quote runs to the matching close quote, spaces included. */
function tokenize(text: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < text.length) {
    while (i < text.length && /\s/u.test(text[i]!)) i++;
    if (i >= text.length) break;
    const start = i;
    const close = OPEN_QUOTES[text[i]!];
    if (close !== undefined) {
      const closeAt = text.indexOf(close, i + 1);
      if (closeAt !== -1) {
        // The quoted run ends the token only if whitespace (or the end) follows it.
        i = closeAt + 1;
        while (i < text.length && !/\s/u.test(text[i]!)) i++;
        tokens.push({ text: text.slice(start, i), start, end: i, quoted: true });
        continue;
      }
    }
    while (i < text.length && !/\s/u.test(text[i]!)) i++;
    tokens.push({ text: text.slice(start, i), start, end: i, quoted: false });
  }
  return tokens;
}

/**
 * Matches `--name`, `--name=value`, and the em/en dash that phone keyboards and Slack turn `--` into.
 * A lone `--` is not a flag.
 */
const FLAG_RE = /^(?:--|—|–)([A-Za-z][A-Za-z0-9_-]*)(?:=(.*))?$/su;

interface RawOptions {
  prompt: string;
  negative?: string;
  seed?: string;
  steps?: string;
  guidance?: string;
  sampler?: string;
  aspect?: string;
  size?: string;
  model?: string;
  strength?: string;
}

/** Parses the text form: `a lighthouse at dusk --no blurry, text --seed 42 --ar 3:2`. */
export function parseImagineText(text: string, limits: RequestLimits): Result<ImagineRequest> {
  const raw = splitFlags(text);
  if (!raw.ok) return raw;
  return validateImagine(raw.value, limits);
}

function splitFlags(text: string): Result<RawOptions> {
  const tokens = tokenize(text);
  const promptParts: string[] = [];
  const seen = new Map<FlagName, string>();
  const values: Partial<Record<FlagName, string>> = {};
  let i = 0;
  while (i < tokens.length) {
    const token = tokens[i]!;
    const match = token.quoted ? null : FLAG_RE.exec(token.text);
    if (match === null) {
      promptParts.push(token.text);
      i++;
      continue;
    }
    const written = token.text.split('=')[0]!;
    const name = FLAG_ALIASES[match[1]!.toLowerCase()];
    if (name === undefined) {
      return fail(
        `Unknown option \`${written}\`. Allowed options: ${FLAG_HELP}. ` +
          'To use it as prompt text, put it in quotes.',
        ErrorCode.UnknownFlag,
      );
    }
    const previous = seen.get(name);
    if (previous !== undefined) {
      return fail(`\`${written}\` is given twice (already as \`${previous}\`). Give each option once.`);
    }
    seen.set(name, written);
    i++;
    let value: string | undefined = match[2];
    if (name === 'negative') {
      // The negative prompt runs until the next flag, so it may contain spaces and commas.
      const parts: string[] = value === undefined || value === '' ? [] : [value];
      while (i < tokens.length && !isFlagToken(tokens[i]!)) {
        parts.push(tokens[i]!.text);
        i++;
      }
      value = parts.join(' ');
    } else if (value === undefined) {
      const next = tokens[i];
      if (next !== undefined && !isFlagToken(next)) {
        value = next.text;
        i++;
      }
    }
    if (value === undefined || value.trim() === '') {
      return fail(`\`${written}\` needs a value. Options: ${FLAG_HELP}.`);
    }
    values[name] = value.trim();
  }
  if (values.aspect !== undefined && values.size !== undefined) {
    return fail('Give either `--ar` or `--size`, not both.');
  }
  const options: RawOptions = { prompt: promptParts.join(' ') };
  for (const [key, value] of Object.entries(values) as [FlagName, string][]) options[key] = value;
  return { ok: true, value: options };
}

function isFlagToken(token: Token): boolean {
  return !token.quoted && FLAG_RE.test(token.text);
}

/** Whether the user chose the size (`--ar`, `--size`, width and height); else an image prompt takes its picture's. */
export function choosesSize(command: { text: string } | { options: ImagineOptions }): boolean {
  if ('text' in command) {
    const raw = splitFlags(command.text);
    return raw.ok && (raw.value.aspect !== undefined || raw.value.size !== undefined);
  }
  const o = command.options;
  return [o.aspect, o.size, o.width, o.height].some((v) => v !== undefined && String(v).trim() !== '');
}

/** Validates typed options (Discord) with the same rules as the text form. */
export function parseImagineOptions(options: ImagineOptions, limits: RequestLimits): Result<ImagineRequest> {
  const raw: RawOptions = { prompt: options.prompt };
  const str = (v: number | string | undefined) => (v === undefined ? undefined : String(v).trim());
  const assign = (key: Exclude<keyof RawOptions, 'prompt'>, v: number | string | undefined) => {
    const s = str(v);
    if (s !== undefined && s !== '') raw[key] = s;
  };
  if (options.negative !== undefined && options.negative.trim() !== '')
    raw.negative = options.negative.trim();
  assign('seed', options.seed);
  assign('steps', options.steps);
  assign('guidance', options.guidance);
  assign('sampler', options.sampler);
  assign('aspect', options.aspect);
  assign('model', options.model);
  assign('strength', options.strength);
  const width = str(options.width);
  const height = str(options.height);
  if ((width === undefined) !== (height === undefined)) {
    return fail('Give both width and height, or neither.');
  }
  if (width !== undefined && height !== undefined) {
    if (options.size !== undefined) return fail('Give either a size or width and height, not both.');
    raw.size = `${width}x${height}`;
  } else {
    assign('size', options.size);
  }
  if (raw.aspect !== undefined && raw.size !== undefined)
    return fail('Give either an aspect ratio or a size, not both.');
  return validateImagine(raw, limits);
}

function validateImagine(raw: RawOptions, limits: RequestLimits): Result<ImagineRequest> {
  const prompt = raw.prompt.replace(/\s+/gu, ' ').trim();
  if (prompt.length === 0) {
    return fail('The prompt is empty. Describe what to draw, e.g. `/imagine a lighthouse at dusk --ar 3:2`.');
  }
  if (prompt.length > MAX_PROMPT_CHARS) {
    return fail(
      `The prompt is ${prompt.length} characters long; the limit is ${MAX_PROMPT_CHARS}.`,
      ErrorCode.PromptTooLong,
    );
  }
  const negative = (raw.negative ?? limits.defaultNegative ?? '').replace(/\s+/gu, ' ').trim();
  if (negative.length > MAX_PROMPT_CHARS) {
    return fail(
      `The negative prompt is ${negative.length} characters long; the limit is ${MAX_PROMPT_CHARS}.`,
      ErrorCode.PromptTooLong,
    );
  }

  let seed: number | undefined;
  if (raw.seed !== undefined) {
    const parsed = parseSeed(raw.seed);
    if (!parsed.ok) return parsed;
    seed = parsed.value;
  }

  let steps = limits.defaultSteps;
  if (raw.steps !== undefined) {
    if (!/^\d+$/u.test(raw.steps) || Number(raw.steps) < 1 || Number(raw.steps) > limits.maxSteps) {
      return fail(`Steps must be a whole number from 1 to ${limits.maxSteps}, got \`${raw.steps}\`.`);
    }
    steps = Number(raw.steps);
  }

  let guidance = limits.defaultGuidance;
  if (raw.guidance !== undefined) {
    const g = /^\d+(\.\d+)?$|^\.\d+$/u.test(raw.guidance) ? Number(raw.guidance) : Number.NaN;
    if (!Number.isFinite(g) || g < 0 || g > MAX_GUIDANCE) {
      return fail(`Guidance (--cfg) must be a number from 0 to ${MAX_GUIDANCE}, got \`${raw.guidance}\`.`);
    }
    guidance = g;
  }

  let sampler = limits.defaultSampler;
  if (raw.sampler !== undefined) {
    const normalised = normaliseSampler(raw.sampler);
    if (normalised === undefined) {
      return fail(`Unknown sampler \`${raw.sampler}\`. Choose one of: ${SAMPLERS.join(', ')}.`);
    }
    sampler = normalised;
  }

  let width = limits.defaultWidth;
  let height = limits.defaultHeight;
  // A team's default aspect applies only when the user gave neither an aspect nor a size.
  const aspect = raw.aspect ?? (raw.size === undefined ? limits.defaultAspect : undefined);
  if (aspect !== undefined) {
    const size = sizeForAspect(aspect, limits);
    if (!size.ok) return size;
    ({ width, height } = size.value);
  } else if (raw.size !== undefined) {
    const size = parseSize(raw.size, limits);
    if (!size.ok) return size;
    ({ width, height } = size.value);
  }

  // Only a model asked for is kept; the service puts the default one in the job spec (modelOf).
  let model: string | undefined;
  if (raw.model !== undefined) {
    const served = servedModels(limits);
    const name = raw.model.toLowerCase();
    if (!served.includes(name)) return { ok: false, error: unknownModelError(raw.model, served) };
    model = name;
  }

  let strength: number | undefined;
  if (raw.strength !== undefined) {
    const parsed = parseStrength(raw.strength);
    if (parsed instanceof UserError) return { ok: false, error: parsed };
    strength = parsed;
  }

  const value: ImagineRequest = {
    prompt,
    negative,
    ...(seed === undefined ? {} : { seed }),
    steps,
    guidance,
    sampler,
    width,
    height,
    ...(model === undefined ? {} : { model }),
    ...(strength === undefined ? {} : { strength }),
  };
  return { ok: true, value };
}

/** The served model names, the default first. */
export function servedModels(limits: RequestLimits): readonly string[] {
  return limits.models !== undefined && limits.models.length > 0 ? limits.models : [DEFAULT_MODEL_NAME];
}

/** The model a request runs on: the one it asked for, else the deployment's default. */
export function modelOf(request: ImagineRequest, limits: RequestLimits): string {
  return request.model ?? servedModels(limits)[0]!;
}

export function parseSeed(text: string): Result<number> {
  const trimmed = text.trim();
  if (!/^\d+$/u.test(trimmed) || Number(trimmed) > MAX_SEED) {
    return fail(`The seed must be a whole number from 0 to ${MAX_SEED}, got \`${text}\`.`);
  }
  return { ok: true, value: Number(trimmed) };
}

function normaliseSampler(text: string): SamplerName | undefined {
  const key = text
    .trim()
    .toLowerCase()
    .replace(/\+\+/gu, 'pp')
    .replace(/[\s-]+/gu, '_')
    .replace(/^k_/u, '');
  const aliases: Readonly<Record<string, SamplerName>> = {
    euler_ancestral: 'euler_a',
    eulera: 'euler_a',
    dpmpp2m: 'dpmpp_2m',
    dpmpp_2m_k: 'dpmpp_2m_karras',
    dpmpp2m_karras: 'dpmpp_2m_karras',
    plms: 'pndm',
  };
  if (isSamplerName(key)) return key;
  return aliases[key];
}

function parseSize(text: string, limits: RequestLimits): Result<{ width: number; height: number }> {
  const match = /^(\d{1,5})\s*[x×*]\s*(\d{1,5})$/iu.exec(text.trim());
  if (match === null) return fail(`Size must look like \`640x448\` (width x height), got \`${text}\`.`);
  const width = Number(match[1]);
  const height = Number(match[2]);
  for (const [label, side] of [
    ['Width', width],
    ['Height', height],
  ] as const) {
    if (side < MIN_SIDE || side > MAX_SIDE) {
      return fail(`${label} must be from ${MIN_SIDE} to ${MAX_SIDE} pixels, got ${side}.`);
    }
    if (side % 8 !== 0) {
      const lower = side - (side % 8);
      return fail(`${label} must be a multiple of 8, got ${side} (try ${lower} or ${lower + 8}).`);
    }
  }
  if (width * height > limits.maxPixels) {
    return fail(
      `${width}x${height} is ${width * height} pixels; the limit is ${limits.maxPixels} ` +
        `(for example ${maxSquare(limits)}x${maxSquare(limits)}).`,
    );
  }
  return { ok: true, value: { width, height } };
}

function maxSquare(limits: RequestLimits): number {
  return Math.floor(Math.sqrt(limits.maxPixels) / 8) * 8;
}

const MAX_ASPECT = 4;
/**
 * Aspect ratios map onto a 64-pixel grid: an SD 1.x UNet halves the latent three times and its ONNX
 * exports upsample by a fixed factor of 2, so sizes that are not multiples of 64 fail inside the
 * UNet. Explicit `--size` still accepts any multiple of 8 (models exported with dynamic upsampling).
 */
export const ASPECT_GRID = 64;
/** How much a ratio error counts against an area error when picking the size (both in log space). */
const RATIO_WEIGHT = 4;

/**
 * Maps `W:H` to the grid size whose ratio is nearest `W:H` and whose area is nearest the default
 * (native) area, within the pixel budget: 3:2 → 576×384, 16:9 → 704×384, 4:3 → 576×448.
 */
export function sizeForAspect(
  text: string,
  limits: RequestLimits,
): Result<{ width: number; height: number }> {
  const match = /^(\d{1,4}(?:\.\d{1,3})?)\s*[:/]\s*(\d{1,4}(?:\.\d{1,3})?)$/u.exec(text.trim());
  const rw = match === null ? 0 : Number(match[1]);
  const rh = match === null ? 0 : Number(match[2]);
  if (match === null || rw <= 0 || rh <= 0) {
    return fail(`Aspect ratio must look like \`3:2\` (width:height), got \`${text}\`.`);
  }
  const ratio = rw / rh;
  if (ratio > MAX_ASPECT || ratio < 1 / MAX_ASPECT) {
    return fail(`Aspect ratio must be between 1:${MAX_ASPECT} and ${MAX_ASPECT}:1, got \`${text}\`.`);
  }
  const area = Math.min(limits.defaultWidth * limits.defaultHeight, limits.maxPixels);
  let best: { width: number; height: number; cost: number } | undefined;
  for (let height = ASPECT_GRID; height <= MAX_SIDE; height += ASPECT_GRID) {
    for (
      let width = ASPECT_GRID;
      width <= MAX_SIDE && width * height <= limits.maxPixels;
      width += ASPECT_GRID
    ) {
      const cost =
        RATIO_WEIGHT * Math.abs(Math.log(width / height / ratio)) +
        Math.abs(Math.log((width * height) / area));
      if (best === undefined || cost < best.cost) best = { width, height, cost };
    }
  }
  if (best === undefined) {
    return fail(
      `No ${ASPECT_GRID}-pixel grid size fits the pixel limit (${limits.maxPixels}); use --size instead.`,
    );
  }
  return { ok: true, value: { width: best.width, height: best.height } };
}

/** Renders a request back into the text form; `parseImagineText(formatImagineText(r))` gives `r` back. */
export function formatImagineText(request: ImagineRequest): string {
  const parts = [request.prompt];
  if (request.negative !== '') parts.push(`--no ${request.negative}`);
  if (request.seed !== undefined) parts.push(`--seed ${request.seed}`);
  parts.push(`--steps ${request.steps}`, `--cfg ${request.guidance}`, `--sampler ${request.sampler}`);
  parts.push(`--size ${request.width}x${request.height}`);
  if (request.model !== undefined) parts.push(`--model ${request.model}`);
  if (request.strength !== undefined) parts.push(`--strength ${request.strength}`);
  return parts.join(' ');
}
