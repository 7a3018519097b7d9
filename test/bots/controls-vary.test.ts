import { describe, expect, it } from 'vitest';
import { decodeControl, encodeControl, gridControls, imageControls } from '../../bots/service/controls.ts';

/** The button codec's vary and upscale2x ids: record id, image index and (vary only) the strength. */
describe('vary and upscale ×2 buttons', () => {
  it('round-trip, carry the strength only for vary, and stay within Discord’s 100 characters', () => {
    const recordId = `discord-${'9'.repeat(19)}`;
    for (const control of [
      { action: 'vary', recordId, index: 3, strength: 'strong' },
      { action: 'vary', recordId, index: 0, strength: 'subtle' },
      { action: 'upscale2x', recordId, index: 2 },
    ] as const) {
      const id = encodeControl(control);
      expect(id.length).toBeLessThanOrEqual(100);
      expect(decodeControl(id)).toEqual(control);
    }
    expect(encodeControl({ action: 'vary', recordId, index: 1, strength: 'subtle' })).toBe(
      `vary:${recordId}:1:subtle`,
    );
  });

  it('refuses what the codec did not make', () => {
    for (const id of [
      'vary:discord-1:1', // no strength
      'vary:discord-1:1:medium',
      'vary:discord-1:4:subtle', // images are 0..3
      'upscale2x:discord-1:1:strong', // only vary names a strength
      'refine:discord-1:1:subtle',
      'vary:discord-1:1:subtle:x',
    ]) {
      expect(decodeControl(id), id).toBeNull();
    }
  });

  it('a grid gets V1–Vn (subtle) as its third row; a full-size image both strengths and Upscale ×2', () => {
    const rows = gridControls('web-abc', 4);
    expect(rows.map((r) => r.map((c) => c.label))).toEqual([
      ['1', '2', '3', '4', '🔄'],
      ['U1', 'U2', 'U3', 'U4'],
      ['V1', 'V2', 'V3', 'V4'],
    ]);
    expect(rows[2]?.map((c) => decodeControl(c.id))).toEqual(
      [0, 1, 2, 3].map((index) => ({ action: 'vary', recordId: 'web-abc', index, strength: 'subtle' })),
    );
    const image = imageControls('web-abc', 2).flat();
    expect(image.map((c) => [c.label, c.id])).toEqual([
      ['Vary (Subtle)', 'vary:web-abc:2:subtle'],
      ['Vary (Strong)', 'vary:web-abc:2:strong'],
      ['Upscale ×2', 'upscale2x:web-abc:2'],
    ]);
  });
});
