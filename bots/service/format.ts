import type { RequestLimits } from '../../core/config.ts';
import type { JobKind, Surface } from '../../core/jobspec.ts';
import type { ImagineRequest } from '../../core/request.ts';
import { UPSCALE_FACTOR, VARY_STRENGTH_NAMES, VARY_STRENGTHS } from '../../core/vary.ts';
import type { GridImageInfo, GridSettings, Markup } from '../surface.ts';
import { imagePromptText } from './image-prompt.ts';

/**
 * Every text a user sees, written once for all surfaces with the surface's markup. Prompts are
 * user text: escaped, and shortened (never the rest of the message) when the surface's length limit
 * would be exceeded.
 */

const ELLIPSIS = '…';

function clip(text: string, max: number): string {
  if (text.length <= max) return text;
  return text.slice(0, Math.max(0, max - 1)).trimEnd() + ELLIPSIS;
}

/** Builds with the longest prompt excerpt that fits `maxLength`. */
function fitText(maxLength: number, build: (promptMax: number) => string): string {
  let promptMax = 4000;
  let text = build(promptMax);
  while (text.length > maxLength && promptMax > 8) {
    promptMax = Math.floor(promptMax * 0.75);
    text = build(promptMax);
  }
  return text.length > maxLength ? clip(text, maxLength) : text;
}

function seedsText(m: Markup, seeds: readonly number[]): string {
  return seeds.map((s) => m.code(String(s))).join(' ');
}

/** Says what a job continues: which image, and (image-to-image) at which strength. */
function origin(kind: JobKind, parentIndex: number | undefined, strength?: number): string {
  const text = derivationText(kind, parentIndex, strength);
  return text === null ? '' : ` · ${text}`;
}

/**
 * What a job was made from, in words ("variations of image 2 (subtle, strength 0.35)"); null for a
 * plain /imagine. Chat captions and the playground say it the same way.
 */
export function derivationText(
  kind: JobKind,
  parentIndex: number | undefined,
  strength?: number,
): string | null {
  const image = parentIndex === undefined ? '' : ` ${parentIndex + 1}`;
  if (kind === 'refine' && parentIndex !== undefined) return `refining image${image}`;
  if (kind === 'reroll') return 'reroll';
  if (kind === 'vary' && strength !== undefined)
    return `variations of image${image} (${strengthName(strength)})`;
  if (kind === 'upscale') return `image${image} upscaled ×${UPSCALE_FACTOR}`;
  if (kind === 'imagine' && strength !== undefined) return `from your picture (strength ${strength})`;
  return null;
}

/** "subtle, strength 0.35" for Vary's named strengths, else the number. */
export function strengthName(strength: number): string {
  const name = VARY_STRENGTH_NAMES.find((n) => VARY_STRENGTHS[n] === strength);
  return name === undefined ? `strength ${strength}` : `${name}, strength ${strength}`;
}

export interface QueuedTextInput {
  readonly user: string;
  readonly prompt: string;
  readonly jobKind: JobKind;
  readonly parentIndex?: number;
  /** Image-to-image: the job's strength. */
  readonly strength?: number;
  readonly seeds: readonly number[];
  readonly position: number;
  readonly warnings: readonly string[];
}

export function queuedText(m: Markup, maxLength: number, input: QueuedTextInput): string {
  const where = input.position === 0 ? 'next in line' : `position ${input.position + 1} in the queue`;
  return fitText(maxLength, (pm) =>
    [
      `${m.bold(m.escape(clip(input.prompt, pm)))} — ${m.mention(input.user)}${origin(input.jobKind, input.parentIndex, input.strength)}`,
      `Queued (${where}) · seeds ${seedsText(m, input.seeds)}`,
      ...input.warnings.map((w) => `⚠️ ${w}`),
    ].join('\n'),
  );
}

export function progressText(
  m: Markup,
  maxLength: number,
  input: { user: string; prompt: string; step: number; total: number; percent: number },
): string {
  return fitText(maxLength, (pm) =>
    [
      `${m.bold(m.escape(clip(input.prompt, pm)))} — ${m.mention(input.user)}`,
      `Generating… ${input.percent}% (step ${input.step}/${input.total})`,
    ].join('\n'),
  );
}

export function settingsText(m: Markup, s: GridSettings, promptMax: number): string {
  const parts = [s.sampler, `${s.steps} steps`, `cfg ${s.guidance}`, `${s.width}×${s.height}`];
  if (s.negative !== '') parts.push(`negative: ${m.escape(clip(s.negative, promptMax))}`);
  const image = imagePromptText(m, s);
  if (image !== undefined) parts.push(image);
  return parts.join(' · ');
}

/** Notes about truncation, the demo model and the safety checker; shown under a grid. */
export function gridNotes(
  images: readonly GridImageInfo[],
  model: { name: string; demo: boolean } | undefined,
  nsfw: readonly boolean[] | undefined,
): string[] {
  const notes: string[] = [];
  const cut = images.filter((i) => i.truncatedTokens > 0);
  if (cut.length > 0) {
    const which =
      cut.length === images.length
        ? 'The prompt'
        : `The prompt of image ${cut.map((i) => i.index + 1).join(', ')}`;
    const dropped = Math.max(...cut.map((i) => i.truncatedTokens));
    notes.push(
      `${which} was cut at the model's 77-token limit; the last ${dropped} token${dropped === 1 ? ' was' : 's were'} ignored.`,
    );
  }
  const flagged = (nsfw ?? []).flatMap((f, i) => (f ? [i + 1] : []));
  if (flagged.length > 0) notes.push(`The safety checker flagged image ${flagged.join(', ')}.`);
  if (model?.demo === true) {
    // Not the model's name: demo labels already say "not Stable Diffusion", and the note said it twice.
    notes.push('Made with the built-in demo model: synthetic images, not Stable Diffusion.');
  }
  return notes;
}

export function gridText(
  m: Markup,
  maxLength: number,
  input: {
    owner: string;
    jobKind: JobKind;
    parentIndex?: number;
    /** Image-to-image: the job's strength. */
    strength?: number;
    images: readonly GridImageInfo[];
    settings: GridSettings;
    notes: readonly string[];
  },
): string {
  const first = input.images[0];
  const samePrompt = input.images.every((i) => i.prompt === first?.prompt);
  return fitText(maxLength, (pm) => {
    const lines: string[] = [];
    if (samePrompt) {
      lines.push(
        `${m.bold(m.escape(clip(first?.prompt ?? '', pm)))} — ${m.mention(input.owner)}${origin(input.jobKind, input.parentIndex, input.strength)}`,
      );
      lines.push(
        `Seeds: ${input.images.map((i) => `${i.index + 1}: ${m.code(String(i.seed))}`).join(' · ')}`,
      );
    } else {
      lines.push(
        `${m.mention(input.owner)}${origin(input.jobKind, input.parentIndex, input.strength).replace(/^ · /u, ' ')}`,
      );
      for (const image of input.images) {
        lines.push(
          `${image.index + 1}. ${m.code(String(image.seed))} ${m.escape(clip(image.prompt, Math.ceil(pm / 2)))}`,
        );
      }
    }
    lines.push(settingsText(m, input.settings, pm));
    lines.push(...input.notes.map((n) => `ℹ️ ${n}`));
    return lines.join('\n');
  });
}

export function imageText(
  m: Markup,
  maxLength: number,
  input: { user: string; index: number; seed: number; prompt: string },
): string {
  return fitText(
    maxLength,
    (pm) =>
      `Image ${input.index + 1} (seed ${m.code(String(input.seed))}) — ${m.escape(clip(input.prompt, pm))} · for ${m.mention(input.user)}`,
  );
}

export function failureText(
  m: Markup,
  maxLength: number,
  input: { owner: string; prompt: string; reason: string },
): string {
  return fitText(maxLength, (pm) =>
    [
      `${m.bold(m.escape(clip(input.prompt, pm)))} — ${m.mention(input.owner)}`,
      `❌ Failed: ${m.escape(input.reason)}`,
    ].join('\n'),
  );
}

export function cancelledText(
  m: Markup,
  maxLength: number,
  input: { owner: string; prompt: string; by: string },
): string {
  return fitText(maxLength, (pm) =>
    [
      `${m.bold(m.escape(clip(input.prompt, pm)))} — ${m.mention(input.owner)}`,
      `🚫 Cancelled by ${input.by}.`,
    ].join('\n'),
  );
}

/** Plain markup, for logs, tests and surfaces without formatting. */
export const PLAIN_MARKUP: Markup = {
  bold: (t) => t,
  code: (t) => t,
  mention: (u) => `@${u}`,
  escape: (t) => t,
};

/** One prompt for captions: the shared prompt, or (refinements) the common stem before the suffixes. */
export function displayPrompt(prompts: readonly string[]): string {
  const first = prompts[0] ?? '';
  if (prompts.every((p) => p === first)) return first;
  let end = first.length;
  for (const p of prompts) {
    let i = 0;
    while (i < end && i < p.length && p[i] === first[i]) i++;
    end = i;
  }
  const stem = first
    .slice(0, end)
    .replace(/[\s,;]+$/u, '')
    .trim();
  return stem === '' ? first : stem;
}

/** Who cancelled, as a mention where it is a user of this surface, else as literal text. */
export function displayUser(m: Markup, surface: Surface, by: string): string {
  const prefix = `${surface}:`;
  if (by.startsWith(prefix)) return m.mention(by.slice(prefix.length));
  if (/^[A-Za-z0-9_-]+$/u.test(by)) return m.mention(by);
  return m.escape(by);
}

/** Hints shown with the queued message; they never block a request. */
export function warningsFor(request: ImagineRequest, limits: RequestLimits): string[] {
  const warnings: string[] = [];
  const own = limits.modelSizeReduced;
  if (own !== undefined && request.width === limits.defaultWidth && request.height === limits.defaultHeight) {
    warnings.push(
      `The model's own size ${own.width}×${own.height} is over the limit here (${limits.maxPixels} pixels), so it was reduced to ${request.width}×${request.height}.`,
    );
  }
  const side = Math.max(limits.defaultWidth, limits.defaultHeight);
  if (request.width >= side * 1.5 || request.height >= side * 1.5) {
    warnings.push(
      `${request.width}×${request.height} is far from the model's native ${limits.defaultWidth}×${limits.defaultHeight}; subjects may repeat or stretch.`,
    );
  }
  if (request.guidance <= 1 && request.negative !== '') {
    warnings.push(
      'Guidance of 1 or less turns classifier-free guidance off, so the negative prompt has no effect.',
    );
  }
  return warnings;
}
