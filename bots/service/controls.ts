import { JOB_ID_RE } from '../../core/jobspec.ts';
import { GRID_SIZE } from '../../core/seeds.ts';
import { CONTROL_ACTIONS, type Control, type ControlAction, type ControlRows } from '../surface.ts';

/**
 * The one codec for button ids on every surface: `action:recordId:index`. Buttons carry nothing else;
 * everything else is read from the record, so a button works after any restart until its record expires.
 */

/** Discord's custom_id limit; Slack's value limit (2000) is looser. */
export const MAX_CONTROL_ID_LENGTH = 100;

export interface DecodedControl {
  readonly action: ControlAction;
  readonly recordId: string;
  readonly index: number;
}

export function encodeControl(control: DecodedControl): string {
  const id = `${control.action}:${control.recordId}:${control.index}`;
  if (decodeControl(id) === null) throw new RangeError(`not an encodable control: ${id}`);
  return id;
}

/** Null for anything this codec did not produce (tampered, truncated, foreign). */
export function decodeControl(id: string): DecodedControl | null {
  if (id.length > MAX_CONTROL_ID_LENGTH) return null;
  const parts = id.split(':');
  if (parts.length !== 3) return null;
  const [action, recordId, indexText] = parts as [string, string, string];
  if (!(CONTROL_ACTIONS as readonly string[]).includes(action)) return null;
  if (!JOB_ID_RE.test(recordId)) return null;
  if (!/^\d$/u.test(indexText)) return null;
  const index = Number(indexText);
  if (index >= GRID_SIZE) return null;
  // Only refine and upscale address an image; the others always carry 0.
  if ((action === 'reroll' || action === 'cancel') && index !== 0) return null;
  return { action: action as ControlAction, recordId, index };
}

function control(
  action: ControlAction,
  recordId: string,
  index: number,
  label: string,
  style: Control['style'],
): Control {
  return { action, recordId, index, label, style, id: encodeControl({ action, recordId, index }) };
}

/** Row 1: refine 1..n and 🔄; row 2: U1..Un. */
export function gridControls(recordId: string, imageCount: number): ControlRows {
  const n = Math.min(imageCount, GRID_SIZE);
  const refine = Array.from({ length: n }, (_, i) =>
    control('refine', recordId, i, String(i + 1), 'secondary'),
  );
  const upscale = Array.from({ length: n }, (_, i) =>
    control('upscale', recordId, i, `U${i + 1}`, 'secondary'),
  );
  return [[...refine, control('reroll', recordId, 0, '🔄', 'primary')], upscale];
}

/** Shown while a job is queued or running. */
export function cancelControls(recordId: string): ControlRows {
  return [[control('cancel', recordId, 0, 'Cancel', 'danger')]];
}
