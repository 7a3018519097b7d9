import { z } from 'zod';
import { ErrorCode } from '../../core/errors.ts';
import { type ImagineOptions, MAX_PROMPT_CHARS } from '../../core/request.ts';
import { SAMPLERS } from '../../core/samplers.ts';
import { MAX_SEED } from '../../core/seeds.ts';
import { HttpError } from '../ops/http.ts';
import { imageField, type UploadedImageField } from './image-body.ts';

/**
 * The body of `POST /api/imagine`: `{"text": "<prompt> --flags"}`, or typed fields. zod checks each
 * field's JSON type here (a wrong type is a 400 naming the field and what it takes); the values then
 * go through the same parser as the text flags and Discord's options, which checks ranges and says
 * what is allowed (steps up to MAX_STEPS, sizes within MAX_PIXELS, …).
 */

const numberOrString = z.union([z.number(), z.string()]);

/** Each typed field: its JSON type, and what to tell a caller who sent something else. `null` means "not given". */
const FIELDS = {
  prompt: { schema: z.string(), allowed: `a string: what to draw, up to ${MAX_PROMPT_CHARS} characters` },
  negative: {
    schema: z.string().nullish(),
    allowed: `a string: what to leave out, up to ${MAX_PROMPT_CHARS} characters`,
  },
  seed: {
    schema: numberOrString.nullish(),
    allowed: `a whole number from 0 to ${MAX_SEED} (as a number or a string of digits)`,
  },
  steps: { schema: numberOrString.nullish(), allowed: 'a whole number of steps, e.g. 25' },
  guidance: { schema: numberOrString.nullish(), allowed: 'a number from 0 to 30, e.g. 7.5' },
  sampler: { schema: z.string().nullish(), allowed: `one of ${SAMPLERS.map((s) => `"${s}"`).join(', ')}` },
  width: { schema: numberOrString.nullish(), allowed: 'a whole number of pixels, a multiple of 8, e.g. 512' },
  height: {
    schema: numberOrString.nullish(),
    allowed: 'a whole number of pixels, a multiple of 8, e.g. 512',
  },
  aspect: { schema: z.string().nullish(), allowed: 'an aspect ratio "W:H" from 1:4 to 4:1, e.g. "3:2"' },
  size: { schema: z.string().nullish(), allowed: 'a size "WxH" in multiples of 8, e.g. "640x448"' },
  model: { schema: z.string().nullish(), allowed: 'the name of a served model (GET /api/info lists them)' },
  strength: {
    schema: numberOrString.nullish(),
    allowed: 'a number above 0 and at most 1 (with "init_image"), e.g. 0.6',
  },
} as const satisfies Record<keyof ImagineOptions, { schema: z.ZodType; allowed: string }>;

/** Typed fields `POST /api/imagine` accepts (the text form is `{"text": …}`). */
export const TYPED_FIELDS = Object.keys(FIELDS) as readonly (keyof typeof FIELDS)[];

const textSchema = z.string();

export type ImagineBody = ({ readonly text: string } | { readonly options: ImagineOptions }) & {
  readonly image?: UploadedImageField;
};

/** Fields of an image prompt, allowed with either form. */
const IMAGE_FIELDS = ['init_image', 'init_image_name'];

/** Validates the body's shape and types; throws a 400 HttpError naming every bad field. */
export function imagineBody(body: Record<string, unknown>): ImagineBody {
  const image = imageField(body);
  const rest = Object.fromEntries(Object.entries(body).filter(([k]) => !IMAGE_FIELDS.includes(k)));
  const form = 'text' in rest ? { text: textField(rest) } : { options: typedFields(rest) };
  return image === undefined ? form : { ...form, image };
}

function textField(body: Record<string, unknown>): string {
  const strength = body.strength;
  if (strength !== undefined && strength !== null) {
    // The slider's value joins the text as its flag, so `--strength` typed too is "given twice".
    const plain =
      typeof strength === 'number' || (typeof strength === 'string' && /^\s*[\d.]+\s*$/u.test(strength));
    if (!plain) {
      throw new HttpError(ErrorCode.InvalidRequest, `"strength" must be ${FIELDS.strength.allowed}.`);
    }
    return `${textField({ text: body.text })} --strength ${String(strength).trim()}`;
  }
  const extra = Object.keys(body).filter((k) => k !== 'text' && k !== 'strength');
  if (extra.length > 0) {
    throw new HttpError(
      ErrorCode.InvalidRequest,
      `Send either {"text": …} or typed fields, not both (got ${extra.join(', ')} with text).`,
    );
  }
  const text = textSchema.safeParse(body.text);
  if (!text.success) {
    throw new HttpError(
      ErrorCode.InvalidRequest,
      `"text" must be a string, e.g. "a lighthouse --ar 3:2"; got ${jsonType(body.text)}.`,
    );
  }
  // The page sends what the user typed; the command name itself is not part of the prompt.
  return text.data.replace(/^\s*\/imagine\b\s*/iu, '');
}

function typedFields(body: Record<string, unknown>): ImagineOptions {
  const unknown = Object.keys(body).filter((k) => !(TYPED_FIELDS as readonly string[]).includes(k));
  if (unknown.length > 0) {
    throw new HttpError(
      ErrorCode.UnknownFlag,
      `Unknown field${unknown.length > 1 ? 's' : ''} ${unknown.map((k) => `"${k}"`).join(', ')}. ` +
        `Send {"text": "<prompt> --flags"} or any of: text, ${TYPED_FIELDS.join(', ')}.`,
    );
  }
  if (body.prompt === undefined || body.prompt === null) {
    throw new HttpError(ErrorCode.InvalidRequest, `Send "prompt" (${FIELDS.prompt.allowed}) or "text".`);
  }
  const options: Record<string, string | number> = {};
  const problems: string[] = [];
  for (const key of TYPED_FIELDS) {
    const value = body[key];
    const parsed = FIELDS[key].schema.safeParse(value);
    if (!parsed.success) problems.push(`"${key}" must be ${FIELDS[key].allowed}; got ${jsonType(value)}`);
    else if (parsed.data !== undefined && parsed.data !== null) options[key] = parsed.data;
  }
  if (problems.length > 0) throw new HttpError(ErrorCode.InvalidRequest, `${problems.join('. ')}.`);
  return options as unknown as ImagineOptions;
}

function jsonType(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  switch (typeof value) {
    case 'string':
      return 'a string';
    case 'number':
      return 'a number';
    case 'boolean':
      return value ? 'true' : 'false';
    case 'object':
      return 'an object';
    default:
      return 'nothing';
  }
}
