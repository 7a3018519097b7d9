import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { configSchema, parseConfig } from '../../core/config.ts';

const envExample = readFileSync(fileURLToPath(new URL('../../.env.example', import.meta.url)), 'utf8');

/** KEY=value lines, with the comment line just above each. */
function parseEnvExample(text: string): { key: string; value: string; comment: string }[] {
  const lines = text.split('\n');
  const entries: { key: string; value: string; comment: string }[] = [];
  for (let i = 0; i < lines.length; i++) {
    const match = /^([A-Z][A-Z0-9_]*)=(.*)$/.exec(lines[i]!);
    if (match === null) continue;
    const above = lines[i - 1] ?? '';
    entries.push({ key: match[1]!, value: match[2]!, comment: above.startsWith('#') ? above : '' });
  }
  return entries;
}

describe('.env.example', () => {
  const entries = parseEnvExample(envExample);

  it('lists exactly the variables of the config schema, once each', () => {
    const keys = entries.map((e) => e.key);
    expect(new Set(keys).size).toBe(keys.length);
    expect([...keys].sort()).toEqual(Object.keys(configSchema.shape).sort());
  });

  it('explains every variable on the line above it', () => {
    for (const entry of entries) expect(entry.comment.length, entry.key).toBeGreaterThan(10);
  });

  it('shows the real defaults: parsing the file gives the same config as an empty environment', () => {
    const fromFile = parseConfig(Object.fromEntries(entries.map((e) => [e.key, e.value])));
    const fromNothing = parseConfig({});
    expect(fromFile.ok).toBe(true);
    expect(fromNothing.ok).toBe(true);
    if (fromFile.ok && fromNothing.ok) expect(fromFile.config).toEqual(fromNothing.config);
  });
});
