import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { configSchema, parseConfig } from '../../core/config.ts';

/**
 * docker/compose.yaml, checked without Docker: every setting must reach the app containers, and the
 * ports they listen on must be published. No YAML library is a dependency, so a reader for the subset
 * compose.yaml uses (block mappings and sequences, comments, quotes, flow lists, anchors, `<<` merges)
 * is below; it throws on anything else rather than guess.
 */
const composeText = readFileSync(
  fileURLToPath(new URL('../../docker/compose.yaml', import.meta.url)),
  'utf8',
);
const envExample = readFileSync(fileURLToPath(new URL('../../.env.example', import.meta.url)), 'utf8');

type Yaml = string | null | Yaml[] | { [key: string]: Yaml };
interface Line {
  readonly indent: number;
  readonly text: string;
  readonly no: number;
}

function stripComment(text: string): string {
  let quote: string | undefined;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quote !== undefined) {
      if (c === quote) quote = undefined;
    } else if (c === '"' || c === "'") quote = c;
    else if (c === '#' && (i === 0 || text[i - 1] === ' ')) return text.slice(0, i).trimEnd();
  }
  return text.trimEnd();
}

function readYaml(text: string): Yaml {
  const lines: Line[] = [];
  text.split('\n').forEach((raw, i) => {
    const body = stripComment(raw);
    if (body.trim() === '') return;
    if (raw.includes('\t')) throw new Error(`line ${i + 1}: tab`);
    lines.push({ indent: body.length - body.trimStart().length, text: body.trim(), no: i + 1 });
  });
  const anchors = new Map<string, Yaml>();
  let pos = 0;

  const scalar = (raw: string, no: number): Yaml => {
    if (raw.startsWith('*')) {
      if (!anchors.has(raw.slice(1))) throw new Error(`line ${no}: unknown alias ${raw}`);
      return anchors.get(raw.slice(1))!;
    }
    if (raw.startsWith('"')) return JSON.parse(raw) as string;
    if (raw.startsWith("'")) return raw.slice(1, -1).replaceAll("''", "'");
    if (raw.startsWith('[') && raw.endsWith(']')) {
      // Flow list of scalars; compose.yaml has no commas inside its items.
      const inner = raw.slice(1, -1).trim();
      return inner === '' ? [] : inner.split(',').map((item) => scalar(item.trim(), no));
    }
    if (/^[&!|>{]/u.test(raw)) throw new Error(`line ${no}: unsupported YAML: ${raw}`);
    return raw;
  };

  const block = (indent: number): Yaml => {
    const first = lines[pos];
    if (first === undefined || first.indent < indent) return null;
    if (first.text.startsWith('[')) {
      // A flow list on its own line under its key.
      pos++;
      return scalar(first.text, first.no);
    }
    return first.text.startsWith('- ') || first.text === '-' ? sequence(first.indent) : mapping(first.indent);
  };

  const value = (rest: string, indent: number, no: number): Yaml => {
    let anchor: string | undefined;
    let raw = rest;
    const anchored = /^&([\w-]+)\s*(.*)$/u.exec(raw);
    if (anchored !== null) {
      anchor = anchored[1];
      raw = anchored[2] ?? '';
    }
    const result = raw === '' ? block(indent + 1) : scalar(raw, no);
    if (anchor !== undefined) anchors.set(anchor, result);
    return result;
  };

  const mapping = (indent: number): Yaml => {
    const own: Record<string, Yaml> = {};
    const merged: Record<string, Yaml> = {};
    while (pos < lines.length && lines[pos]!.indent === indent) {
      const line = lines[pos]!;
      const match = /^([\w.<-]+):(?:\s+(.*))?$/u.exec(line.text);
      if (match === null) throw new Error(`line ${line.no}: expected "key: value", got ${line.text}`);
      pos++;
      const [, key, rest = ''] = match;
      const v = value(rest, indent, line.no);
      if (key === '<<') Object.assign(merged, v as Record<string, Yaml>);
      else own[key!] = v;
    }
    if (pos < lines.length && lines[pos]!.indent > indent)
      throw new Error(`line ${lines[pos]!.no}: indentation`);
    // A merge never overrides keys the mapping sets itself, wherever they are written.
    return { ...merged, ...own };
  };

  const sequence = (indent: number): Yaml => {
    const items: Yaml[] = [];
    while (pos < lines.length && lines[pos]!.indent === indent && lines[pos]!.text.startsWith('-')) {
      const line = lines[pos]!;
      const rest = line.text.slice(1).trimStart();
      if (/^[\w.-]+:(\s|$)/u.test(rest)) {
        // "- key: value" opens a mapping whose keys sit two columns in.
        lines[pos] = { indent: indent + 2, text: rest, no: line.no };
        items.push(mapping(indent + 2));
      } else {
        pos++;
        items.push(value(rest, indent, line.no));
      }
    }
    return items;
  };

  const doc = block(0);
  if (pos !== lines.length) throw new Error(`line ${lines[pos]!.no}: not understood`);
  return doc;
}

/** Compose's interpolation: `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?error}`, `$$`. */
function interpolate(text: string, env: Readonly<Record<string, string>>): string {
  return text.replace(
    /\$\$|\$\{(\w+)(?:(:?)([-?])([^}]*))?\}/gu,
    (_all, name?: string, colon?: string, op?: string, arg?: string) => {
      if (name === undefined) return '$';
      const v = env[name];
      const missing = v === undefined || (colon === ':' && v === '');
      if (op === '?' && missing) throw new Error(`compose would stop: ${arg}`);
      if (op === '-' && missing) return arg ?? '';
      return v ?? '';
    },
  );
}

const compose = readYaml(composeText) as Record<string, Record<string, Record<string, Yaml>>>;
const services = compose.services!;
const SETTINGS = Object.keys(configSchema.shape).sort();
const example = Object.fromEntries(
  [...envExample.matchAll(/^([A-Z][A-Z0-9_]*)=(.*)$/gmu)].map((m) => [m[1]!, m[2]!] as const),
);

/** Fixed by the container layout, documented in compose.yaml and docker/README.md. */
const FIXED: Readonly<Record<string, Readonly<Record<string, string>>>> = {
  bot: { HOST: '0.0.0.0', MODELS_DIR: '/models' },
  worker: { HOST: '0.0.0.0', MODELS_DIR: '/models', ORT_DEVICE_ID: '0' },
};

function environmentOf(service: string): Record<string, string> {
  const env = services[service]?.environment;
  if (env === null || env === undefined || Array.isArray(env) || typeof env !== 'object')
    throw new Error(`${service}: environment must be a mapping`);
  return env as Record<string, string>;
}

describe('docker/compose.yaml', () => {
  it('is read by the narrow reader the way compose reads it (anchors and merges resolved)', () => {
    expect(Object.keys(services).sort()).toEqual(['bot', 'redis', 'worker']);
    expect(services.worker?.image).toBe('imagine-worker:latest');
    expect(services.redis?.command).toContain('noeviction');
  });

  it.each(['bot', 'worker'])(
    'passes every setting of the config schema to %s, and nothing else',
    (service) => {
      const env = environmentOf(service);
      expect(Object.keys(env).sort()).toEqual(SETTINGS);
      for (const key of SETTINGS) {
        const fixed = FIXED[service]?.[key];
        if (fixed !== undefined) expect(env[key], key).toBe(fixed);
        else expect(env[key], key).toMatch(new RegExp(`^\\$\\{${key}(?:[:?-].*)?\\}$`, 'u'));
      }
    },
  );

  it.each(['bot', 'worker'])(
    '%s: any value set in docker/.env or the shell reaches the process unchanged',
    (service) => {
      const env = environmentOf(service);
      // A distinct, non-default value for every setting.
      const given = Object.fromEntries(SETTINGS.map((key) => [key, `set-${key.toLowerCase()}`]));
      for (const key of SETTINGS) {
        const seen = interpolate(env[key]!, given);
        expect(seen, key).toBe(FIXED[service]?.[key] ?? given[key]);
      }
    },
  );

  it.each(['bot', 'worker'])(
    '%s: with only PLAYGROUND_TOKEN, or with a copy of .env.example, the config is valid',
    (service) => {
      const env = environmentOf(service);
      const choices: Record<string, string>[] = [
        { PLAYGROUND_TOKEN: 'x' },
        { ...example, PLAYGROUND_TOKEN: 'x' },
      ];
      for (const given of choices) {
        const seen = Object.fromEntries(SETTINGS.map((key) => [key, interpolate(env[key]!, given)]));
        const parsed = parseConfig(seen);
        expect(parsed.ok ? [] : parsed.errors).toEqual([]);
        if (!parsed.ok) continue;
        expect(parsed.config.REDIS_URL).toBe('redis://redis:6379');
        if (service === 'worker' && given.ORT_EP === undefined) expect(parsed.config.ORT_EP).toBe('cuda');
      }
      expect(() => interpolate(env.PLAYGROUND_TOKEN!, {})).toThrow(/set PLAYGROUND_TOKEN/u);
    },
  );

  it('publishes the playground PORT and, for SLACK_MODE=http, SLACK_PORT, on the ports the bot listens on', () => {
    const env = environmentOf('bot');
    const ports = (services.bot?.ports ?? []) as string[];
    for (const given of [{}, { PORT: '9000', SLACK_PORT: '3100' }]) {
      const published = ports.map((p) => interpolate(p, given));
      const port = interpolate(env.PORT!, given);
      const slackPort = interpolate(env.SLACK_PORT!, given);
      expect(published).toContain(`127.0.0.1:${port}:${port}`);
      expect(published).toContain(`127.0.0.1:${slackPort}:${slackPort}`);
    }
  });
});
