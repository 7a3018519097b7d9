import { somethingWentWrong } from '../../core/errors.ts';
import { DEFAULT_MODEL_NAME } from '../../core/models.ts';
import type { GridRecord, JobStatus } from '../../queue/index.ts';
import { derivationText, gridNotes } from '../service/format.ts';
import { displayPrompt } from '../service.ts';

/** The JSON API's job, as `GET /api/jobs/:id` and the page see it. Image numbers in URLs are 1-based, like the buttons. */
export interface JobJson {
  readonly id: string;
  readonly kind: string;
  readonly status: JobStatus['state'];
  /** Jobs ahead while queued (0 = next); null otherwise. */
  readonly position: number | null;
  readonly progress: { readonly step: number; readonly total: number };
  readonly prompts: readonly string[];
  /** The grid's caption prompt: the shared prompt, or the stem of refined prompts (as chat captions show). */
  readonly prompt: string;
  readonly seeds: readonly number[];
  readonly settings: {
    readonly negative: string;
    readonly sampler: string;
    readonly steps: number;
    readonly guidance: number;
    readonly width: number;
    readonly height: number;
    /** The served model the job runs on (`default` for jobs from before models had names). */
    readonly model: string;
  };
  readonly attempts: number;
  /** `host:pid` of the worker that ran it. */
  readonly worker: string | null;
  readonly error: { readonly message: string; readonly errorId?: string } | null;
  /**
   * Who cancelled it, as seen by the caller: `you`, `owner` (the person who made it) or `admin`.
   * Never a user id: ids are what the signed cookie proves, and must not leak to other people.
   */
  readonly cancelledBy: 'you' | 'owner' | 'admin' | null;
  readonly grid: string | null;
  readonly images: readonly string[];
  /** The grid this one refines, rerolls, varies or upscales; `n` is that image's number (1-based). */
  readonly parent: { readonly id: string; readonly n: number | null } | null;
  /** What it was made from, in the words chat captions use ("variations of image 2 (subtle, strength 0.35)"). */
  readonly derivation: string | null;
  /** Image-to-image: the strength, and the starting picture (a grid's image, or an uploaded one). */
  readonly strength: number | null;
  readonly init:
    | { readonly from: 'grid'; readonly id: string; readonly n: number }
    | {
        readonly from: 'upload';
        readonly sha256: string;
        readonly width: number;
        readonly height: number;
        readonly mime: string;
        /** Image prompts: its size, where it came from and the Discord attachment id, Slack file id or file name. */
        readonly bytes: number;
        readonly source?: string;
        readonly ref?: string;
        readonly name?: string;
      }
    | null;
  /** Truncation, safety and demo-model notes, worded by the conversation service. */
  readonly notes: readonly string[];
  /** The model that made it: served name, demo flag, revision of its files, the loader's label. */
  readonly model: {
    readonly name: string;
    readonly demo: boolean;
    readonly revision?: string;
    readonly label?: string;
  } | null;
  readonly createdAt: number;
  readonly expiresAt: number;
  readonly timings: GridRecord['state']['timings'];
}

export function jobUrl(id: string): string {
  return `/api/jobs/${encodeURIComponent(id)}`;
}

/**
 * Builds the job from its record and, when given, the live status (queue position and step move
 * faster than the record is rewritten).
 */
export function jobJson(
  record: GridRecord,
  live: JobStatus | null,
  latest: { step: number; total: number } | undefined,
  viewer: string,
): JobJson {
  const status = live ?? record.state.status;
  const spec = record.spec;
  const base = jobUrl(record.id);
  const done = status.state === 'done';
  const count = record.spec.prompts.length;
  let progress = { step: 0, total: spec.steps };
  if (status.state === 'running') {
    progress = { step: status.step, total: status.total };
    if (latest !== undefined && latest.step > status.step) progress = latest;
  } else if (done) {
    progress = { step: spec.steps, total: spec.steps };
  }
  const images = record.spec.prompts.map((prompt, index) => ({
    index,
    prompt,
    seed: record.spec.seeds[index] ?? 0,
    truncatedTokens: record.result?.truncatedTokens[index] ?? 0,
  }));
  let error: JobJson['error'] = null;
  if (status.state === 'failed') {
    error = status.userFacing
      ? { message: status.reason }
      : {
          message: somethingWentWrong(status.errorId),
          ...(status.errorId === undefined ? {} : { errorId: status.errorId }),
        };
  }
  return {
    id: record.id,
    kind: spec.kind,
    status: status.state,
    position: status.state === 'queued' ? status.position : null,
    progress,
    prompts: record.spec.prompts,
    prompt: displayPrompt(record.spec.prompts),
    seeds: record.spec.seeds,
    settings: {
      negative: spec.negative,
      sampler: spec.sampler,
      steps: spec.steps,
      guidance: spec.guidance,
      width: spec.width,
      height: spec.height,
      model: spec.model ?? DEFAULT_MODEL_NAME,
    },
    attempts: record.state.attempts,
    worker: record.state.worker ?? null,
    error,
    cancelledBy:
      status.state === 'cancelled' ? cancelledBy(status.by, record.spec.origin.user, viewer) : null,
    grid: done ? `${base}/grid.png` : null,
    images: done ? Array.from({ length: count }, (_, i) => `${base}/images/${i + 1}.png`) : [],
    parent:
      spec.parent === undefined
        ? null
        : { id: spec.parent.gridId, n: spec.parent.index === undefined ? null : spec.parent.index + 1 },
    derivation: derivationText(spec.kind, spec.parent?.index, spec.strength),
    strength: spec.strength ?? null,
    init: initJson(spec.init),
    notes: done ? gridNotes(images, record.result?.model, record.result?.nsfw) : [],
    model: record.result?.model ?? null,
    createdAt: record.state.timings.queuedAt,
    expiresAt: record.state.expiresAt,
    timings: record.state.timings,
  };
}

function initJson(init: GridRecord['spec']['init']): JobJson['init'] {
  if (init === undefined) return null;
  if (init.from === 'grid') return { from: 'grid', id: init.gridId, n: init.index + 1 };
  const { sha256, bytes, width, height, mime, source, ref, name } = init;
  return {
    from: 'upload',
    sha256,
    bytes,
    width,
    height,
    mime,
    ...(source === undefined ? {} : { source }),
    ...(ref === undefined ? {} : { ref }),
    ...(name === undefined ? {} : { name }),
  };
}

function cancelledBy(by: string, owner: string, viewer: string): 'you' | 'owner' | 'admin' {
  if (by === viewer) return 'you';
  return by === owner ? 'owner' : 'admin';
}
