import sharp from 'sharp';
import { type NsfwPolicy, nsfwPolicyFor } from '../../core/nsfw.ts';
import type { GridRecord } from '../../queue/index.ts';
import type { ServiceContext } from './context.ts';
import { DEFAULT_WORKSPACE, type TeamScope, teamFor } from './team.ts';

/**
 * The NSFW policy applied where results are shown (core/nsfw.ts decides which policy applies).
 * Only what is shown changes: the stored PNGs stay as the worker made them, so a later change of
 * policy (or an age-restricted channel) shows them as they are.
 */

/** Where a result is shown: a channel of a workspace on a surface. */
export interface NsfwWhere {
  readonly surface: string;
  readonly workspace?: string | undefined;
  readonly channel: string;
  readonly ageRestricted?: boolean | undefined;
}

/** The policy for a place, from its team's settings (given, or resolved now) and the environment's. */
export async function nsfwPolicyAt(
  ctx: ServiceContext,
  where: NsfwWhere,
  team?: TeamScope,
): Promise<NsfwPolicy> {
  const scope =
    team ??
    (await teamFor(ctx, {
      surface: where.surface as GridRecord['spec']['origin']['surface'],
      workspace: where.workspace ?? DEFAULT_WORKSPACE,
      channel: where.channel,
    }));
  return nsfwPolicyFor(
    { surface: where.surface, ageRestricted: where.ageRestricted === true },
    scope.settings.nsfw,
    ctx.settings.nsfwPolicy ?? 'block',
  );
}

/** The images (0-based) the safety checker flagged in a finished record. */
export function flaggedImages(record: GridRecord): number[] {
  return (record.result?.nsfw ?? []).flatMap((flagged, index) => (flagged ? [index] : []));
}

/** What a policy does to a record's flagged images, without touching pixels (for notes). */
export function nsfwOutcome(record: GridRecord, policy: NsfwPolicy): Pick<Shown, 'withheld' | 'blurred'> {
  const flagged = flaggedImages(record);
  if (policy === 'allow') return { withheld: [], blurred: [] };
  return policy === 'block' ? { withheld: flagged, blurred: [] } : { withheld: [], blurred: flagged };
}

/** What the policy did to a result. */
export interface Shown {
  readonly png: Buffer;
  /** Flagged images replaced by a neutral tile (block). */
  readonly withheld: readonly number[];
  /** Flagged images blurred (blur). */
  readonly blurred: readonly number[];
}

/** Gray: says "nothing here" without looking like an error or a black (failed) image. */
const PLACEHOLDER = { r: 128, g: 128, b: 128 } as const;

/** Strong enough that no detail survives at any size: sigma grows with the image. */
function blurSigma(width: number, height: number): number {
  return Math.max(8, Math.min(width, height) / 8);
}

async function treatTile(tile: Buffer, width: number, height: number, policy: NsfwPolicy): Promise<Buffer> {
  if (policy === 'block') {
    return sharp({ create: { width, height, channels: 3, background: PLACEHOLDER } })
      .png()
      .toBuffer();
  }
  return sharp(tile).removeAlpha().blur(blurSigma(width, height)).png().toBuffer();
}

/** The grid as shown under `policy`: flagged cells replaced or blurred (same layout as queue/grid.ts). */
export async function showGrid(record: GridRecord, grid: Buffer, policy: NsfwPolicy): Promise<Shown> {
  const flagged = flaggedImages(record);
  if (policy === 'allow' || flagged.length === 0) return { png: grid, withheld: [], blurred: [] };
  const count = record.spec.prompts.length;
  const cols = count === 4 ? 2 : count;
  const rows = count === 4 ? 2 : 1;
  const meta = await sharp(grid).metadata();
  const cellWidth = Math.floor((meta.width ?? 0) / cols);
  const cellHeight = Math.floor((meta.height ?? 0) / rows);
  const cells = await Promise.all(
    flagged.map(async (index) => {
      const left = (index % cols) * cellWidth;
      const top = Math.floor(index / cols) * cellHeight;
      const tile = await sharp(grid)
        .extract({ left, top, width: cellWidth, height: cellHeight })
        .png()
        .toBuffer();
      return { input: await treatTile(tile, cellWidth, cellHeight, policy), left, top };
    }),
  );
  const png = await sharp(grid).composite(cells).png().toBuffer();
  return policy === 'block'
    ? { png, withheld: flagged, blurred: [] }
    : { png, withheld: [], blurred: flagged };
}

/** Full-size image `index` as shown under `policy`. */
export async function showImage(
  record: GridRecord,
  index: number,
  png: Buffer,
  policy: NsfwPolicy,
): Promise<Shown> {
  if (policy === 'allow' || record.result?.nsfw?.[index] !== true) return { png, withheld: [], blurred: [] };
  const meta = await sharp(png).metadata();
  const shown = await treatTile(png, meta.width ?? 1, meta.height ?? 1, policy);
  return policy === 'block'
    ? { png: shown, withheld: [index], blurred: [] }
    : { png: shown, withheld: [], blurred: [index] };
}

/** The notes that say what the policy did (replacing the plain "flagged" note). */
export function nsfwNotes(shown: Pick<Shown, 'withheld' | 'blurred'>): string[] {
  const list = (indices: readonly number[]) => indices.map((i) => i + 1).join(', ');
  const notes: string[] = [];
  if (shown.withheld.length > 0) {
    const one = shown.withheld.length === 1;
    notes.push(
      `Image ${list(shown.withheld)} ${one ? 'was' : 'were'} withheld: the safety checker flagged ${one ? 'it' : 'them'}.`,
    );
  }
  if (shown.blurred.length > 0) {
    const one = shown.blurred.length === 1;
    notes.push(
      `Image ${list(shown.blurred)} ${one ? 'is' : 'are'} blurred: the safety checker flagged ${one ? 'it' : 'them'}.`,
    );
  }
  return notes;
}
