/**
 * A `.env` file reader: the entry point reads the file, this parses its text (pure, no I/O).
 *
 * Accepted, as docker compose and dotenv write them:
 * - `KEY=value`, `export KEY=value`, blank lines and `# comments`;
 * - `KEY=value # comment` (a `#` after whitespace starts a comment in an unquoted value);
 * - `'single'` (literal) and `"double"` (with `\n`, `\t`, `\"`, `\\` escapes) quoted values,
 *   which may span lines;
 * - `KEY=` (empty), which the configuration treats as unset, i.e. the documented default.
 * Anything else is an error naming the line, so a typo never silently drops a setting. Errors never
 * quote the line: a mistyped line may hold a token.
 */

export interface DotenvResult {
  /** Values by name, in file order; a name given twice keeps its last value. */
  readonly values: Readonly<Record<string, string>>;
  /** `line N: what is wrong`, one per bad line. */
  readonly errors: readonly string[];
}

const KEY = /^[A-Za-z_][A-Za-z0-9_]*$/u;
const DOUBLE_ESCAPES: Readonly<Record<string, string>> = { n: '\n', r: '\r', t: '\t', '"': '"', '\\': '\\' };

export function parseDotenv(text: string): DotenvResult {
  const values: Record<string, string> = {};
  const errors: string[] = [];
  const lines = text.replace(/^\uFEFF/u, '').split(/\r?\n/u);
  for (let i = 0; i < lines.length; i++) {
    const lineNo = i + 1;
    const line = (lines[i] ?? '').trim();
    if (line === '' || line.startsWith('#')) continue;
    const body = line.startsWith('export ') ? line.slice('export '.length).trimStart() : line;
    const eq = body.indexOf('=');
    if (eq < 0) {
      errors.push(`line ${lineNo}: expected KEY=value`);
      continue;
    }
    const key = body.slice(0, eq).trim();
    if (!KEY.test(key)) {
      errors.push(
        `line ${lineNo}: the name before "=" must be letters, digits and _, not starting with a digit`,
      );
      continue;
    }
    let rest = body.slice(eq + 1).trimStart();
    const quote = rest[0];
    if (quote === '"' || quote === "'") {
      // A quoted value may run over several lines; find its closing quote.
      let raw = rest.slice(1);
      let close = findClose(raw, quote);
      while (close < 0 && i + 1 < lines.length) {
        i++;
        raw += `\n${lines[i] ?? ''}`;
        close = findClose(raw, quote);
      }
      if (close < 0) {
        errors.push(`line ${lineNo}: ${key}: the ${quote} quote is never closed`);
        continue;
      }
      const after = raw.slice(close + 1).trim();
      if (after !== '' && !after.startsWith('#')) {
        errors.push(`line ${lineNo}: ${key}: unexpected text after the closing quote`);
        continue;
      }
      const inner = raw.slice(0, close);
      values[key] =
        quote === "'" ? inner : inner.replace(/\\(.)/gsu, (all, c: string) => DOUBLE_ESCAPES[c] ?? all);
      continue;
    }
    const comment = /\s#/u.exec(rest);
    if (comment !== null) rest = rest.slice(0, comment.index);
    values[key] = rest.trim();
  }
  return { values, errors };
}

function findClose(raw: string, quote: string): number {
  for (let j = 0; j < raw.length; j++) {
    if (quote === '"' && raw[j] === '\\') {
      j++;
      continue;
    }
    if (raw[j] === quote) return j;
  }
  return -1;
}

export interface MergedEnv {
  readonly env: Record<string, string | undefined>;
  /** Names taken from the file. */
  readonly applied: readonly string[];
  /** Names in the file that the environment already sets (the environment wins). */
  readonly overridden: readonly string[];
}

/**
 * The environment with the file's values added. A variable the environment already has wins, even
 * when it is empty (as with dotenv and docker compose): `PORT= npm start` means "the default",
 * whatever `.env` says. The configuration reads empty values as unset, wherever they come from.
 */
export function mergeDotenv(
  env: Readonly<Record<string, string | undefined>>,
  fromFile: Readonly<Record<string, string>>,
): MergedEnv {
  const merged: Record<string, string | undefined> = { ...env };
  const applied: string[] = [];
  const overridden: string[] = [];
  for (const [key, value] of Object.entries(fromFile)) {
    if (env[key] !== undefined) overridden.push(key);
    else {
      merged[key] = value;
      applied.push(key);
    }
  }
  return { env: merged, applied, overridden };
}
