import { JOB_ID_RE } from '../../core/jobspec.ts';
import { GRID_SIZE } from '../../core/seeds.ts';
import { isVaryStrength, type VaryStrength } from '../../core/vary.ts';
import { CONTROL_ACTIONS, type Control, type ControlAction, type ControlRows } from '../surface.ts';

/**
 * The one codec for button ids on every surface: `action:recordId:index`, and for vary
 * `vary:recordId:index:strength`. Buttons carry nothing else;
 * everything else is read from the record, so a button works after any restart until its record expires.
 */

/** Discord's custom_id limit; Slack's value limit (2000) is looser. */
export const MAX_CONTROL_ID_LENGTH = 100;

export interface DecodedControl {
  readonly action: ControlAction;
  readonly recordId: string;
  readonly index: number;
  /** Vary only (and always): subtle or strong. */
  readonly strength?: VaryStrength;
}

export function encodeControl(control: DecodedControl): string {
  const strength = control.strength === undefined ? '' : `:${control.strength}`;
  const id = `${control.action}:${control.recordId}:${control.index}${strength}`;
  if (decodeControl(id) === null) throw new RangeError(`not an encodable control: ${id}`);
  return id;
}

/** Null for anything this codec did not produce (tampered, truncated, foreign). */
export function decodeControl(id: string): DecodedControl | null {
  if (id.length > MAX_CONTROL_ID_LENGTH) return null;
  const parts = id.split(':');
  const [action = '', recordId = '', indexText = '', strength] = parts;
  // Vary, and only vary, names its strength.
  if (parts.length !== (action === 'vary' ? 4 : 3)) return null;
  if (!(CONTROL_ACTIONS as readonly string[]).includes(action)) return null;
  if (strength !== undefined && !isVaryStrength(strength)) return null;
  if (!JOB_ID_RE.test(recordId)) return null;
  if (!/^\d$/u.test(indexText)) return null;
  const index = Number(indexText);
  if (index >= GRID_SIZE) return null;
  // Only refine and upscale address an image; the others always carry 0.
  if ((action === 'reroll' || action === 'cancel') && index !== 0) return null;
  return {
    action: action as ControlAction,
    recordId,
    index,
    ...(strength === undefined ? {} : { strength }),
  };
}

function control(
  action: ControlAction,
  recordId: string,
  index: number,
  label: string,
  style: Control['style'],
  strength?: VaryStrength,
): Control {
  const decoded = { action, recordId, index, ...(strength === undefined ? {} : { strength }) };
  return { ...decoded, label, style, id: encodeControl(decoded) };
}

/**
 * Row 1: refine 1..n and 🔄; row 2: U1..Un; row 3: V1..Vn (Vary (Subtle) of image n, the everyday one;
 * the image message U posts has Vary (Strong) and Upscale ×2). Three of Discord's five rows.
 */
export function gridControls(recordId: string, imageCount: number): ControlRows {
  const n = Math.min(imageCount, GRID_SIZE);
  const refine = Array.from({ length: n }, (_, i) =>
    control('refine', recordId, i, String(i + 1), 'secondary'),
  );
  const upscale = Array.from({ length: n }, (_, i) =>
    control('upscale', recordId, i, `U${i + 1}`, 'secondary'),
  );
  const vary = Array.from({ length: n }, (_, i) =>
    control('vary', recordId, i, `V${i + 1}`, 'secondary', 'subtle'),
  );
  return [[...refine, control('reroll', recordId, 0, '🔄', 'primary')], upscale, vary];
}

/** Under one full-size image: both Vary strengths and Upscale ×2. */
export function imageControls(recordId: string, index: number): ControlRows {
  return [
    [
      control('vary', recordId, index, 'Vary (Subtle)', 'secondary', 'subtle'),
      control('vary', recordId, index, 'Vary (Strong)', 'secondary', 'strong'),
      control('upscale2x', recordId, index, 'Upscale ×2', 'primary'),
    ],
  ];
}

/** Shown while a job is queued or running. */
export function cancelControls(recordId: string): ControlRows {
  return [[control('cancel', recordId, 0, 'Cancel', 'danger')]];
}
