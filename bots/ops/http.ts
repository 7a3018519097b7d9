import type { IncomingMessage, ServerResponse } from 'node:http';
import { ErrorCode, type ErrorLogger, type PublicError, reportError } from '../../core/errors.ts';
import { httpStatusOf, retryAfterSecondsOf } from '../../core/http-status.ts';
import type { Health } from './health.ts';
import type { Metrics } from './metrics.ts';

/**
 * Small HTTP helpers shared by the playground server and the worker's ops server: JSON replies,
 * bounded body reading, and one mapping from project errors to status codes.
 */

/**
 * An HTTP-level refusal (bad method, body too large, …) with the same JSON shape as user errors.
 * Its status and Retry-After come from the code (core/http-status.ts), like every other error's.
 */
export class HttpError extends Error {
  readonly status: number;
  readonly code: ErrorCode;
  readonly headers: Readonly<Record<string, string>>;
  constructor(code: ErrorCode, message: string, headers: Readonly<Record<string, string>> = {}) {
    super(message);
    this.status = httpStatusOf(code);
    this.name = `HttpError[${this.status}]`;
    this.code = code;
    this.headers = { ...retryAfterHeader(code), ...headers };
  }
}

/** The Retry-After header for this code (with the error's own hint, if any), or none. */
function retryAfterHeader(code: ErrorCode, hint?: number): Record<string, string> {
  const seconds = retryAfterSecondsOf(code, hint);
  return seconds === undefined ? {} : { 'retry-after': String(seconds) };
}

export const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
};

export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Readonly<Record<string, string>> = {},
): void {
  if (res.headersSent) {
    res.end();
    return;
  }
  const text = JSON.stringify(body);
  res.writeHead(status, {
    ...SECURITY_HEADERS,
    'content-type': 'application/json; charset=utf-8',
    'cache-control': 'no-store',
    'content-length': String(Buffer.byteLength(text)),
    ...headers,
  });
  res.end(text);
}

export function sendText(
  res: ServerResponse,
  status: number,
  contentType: string,
  body: string | Buffer,
): void {
  res.writeHead(status, {
    ...SECURITY_HEADERS,
    'content-type': contentType,
    'cache-control': 'no-store',
    'content-length': String(Buffer.byteLength(body)),
  });
  res.end(body);
}

/**
 * Answers any error as `{error: {code, message}}` with its code's status and Retry-After
 * (core/http-status.ts); only a UserError's or HttpError's own message is shown, anything else
 * goes through the error sink and shows only an error id.
 */
export function sendError(
  res: ServerResponse,
  error: unknown,
  log: ErrorLogger,
  context: Readonly<Record<string, unknown>> = {},
): void {
  if (error instanceof HttpError) {
    sendJson(res, error.status, { error: { code: error.code, message: error.message } }, error.headers);
    return;
  }
  sendPublicError(res, reportError(log, error, context));
}

/** Sends what a user may see of an error (see `toPublicError`) with its code's status and Retry-After. */
export function sendPublicError(res: ServerResponse, shown: PublicError): void {
  const body: Record<string, unknown> = { code: shown.code, message: shown.message };
  if (shown.errorId !== undefined) body.errorId = shown.errorId;
  if (shown.retryAfterSeconds !== undefined) body.retryAfterSeconds = shown.retryAfterSeconds;
  sendJson(
    res,
    httpStatusOf(shown.code),
    { error: body },
    retryAfterHeader(shown.code, shown.retryAfterSeconds),
  );
}

export interface ReadBodyOptions {
  /** @defaultValue 16384 */
  readonly limitBytes?: number;
}

/** Reads the body as text, refusing (413) past the limit without buffering the rest. */
export async function readBody(req: IncomingMessage, options: ReadBodyOptions = {}): Promise<string> {
  const limit = options.limitBytes ?? 16_384;
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) {
    req.resume();
    throw new HttpError(ErrorCode.BodyTooLarge, `The request body is larger than ${limit} bytes.`);
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    req.on('data', (chunk: Buffer) => {
      if (done) return;
      size += chunk.length;
      if (size > limit) {
        done = true;
        // Keep draining (and discarding) so the 413 can still be written on this connection.
        req.resume();
        reject(new HttpError(ErrorCode.BodyTooLarge, `The request body is larger than ${limit} bytes.`));
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => {
      if (done) return;
      done = true;
      resolve(Buffer.concat(chunks).toString('utf8'));
    });
    req.on('error', (error) => {
      if (done) return;
      done = true;
      reject(new HttpError(ErrorCode.BadBody, `The request body could not be read: ${error.message}`));
    });
  });
}

/** Reads a JSON object body. Empty body → `{}`. Malformed JSON, arrays and scalars → 400; wrong type → 415. */
export async function readJsonObject(
  req: IncomingMessage,
  options: ReadBodyOptions = {},
): Promise<Record<string, unknown>> {
  const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  const text = await readBody(req, options);
  if (text.trim() === '') return {};
  if (type !== '' && type !== 'application/json' && !type.endsWith('+json')) {
    throw new HttpError(ErrorCode.UnsupportedMediaType, 'Send the body as application/json.');
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    const detail = error instanceof Error ? error.message : String(error);
    throw new HttpError(ErrorCode.InvalidRequest, `The body is not valid JSON: ${detail}`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new HttpError(ErrorCode.InvalidRequest, 'The body must be a JSON object.');
  }
  return value as Record<string, unknown>;
}

export function methodNotAllowed(allowed: readonly string[]): HttpError {
  return new HttpError(ErrorCode.MethodNotAllowed, `Use ${allowed.join(' or ')} for this path.`, {
    allow: allowed.join(', '),
  });
}

export function notFound(message = 'No such path.'): HttpError {
  return new HttpError(ErrorCode.NotFound, message);
}

export interface OpsRoutes {
  readonly health: Health;
  readonly metrics: Metrics;
}

/**
 * `/healthz`, `/readyz` and `/metrics`. Returns false when the path is none of them, so a server can
 * fall through to its own routes.
 */
export async function handleOps(
  req: IncomingMessage,
  res: ServerResponse,
  path: string,
  ops: OpsRoutes,
): Promise<boolean> {
  if (path !== '/healthz' && path !== '/readyz' && path !== '/metrics') return false;
  if (req.method !== 'GET' && req.method !== 'HEAD') throw methodNotAllowed(['GET', 'HEAD']);
  if (path === '/healthz') {
    sendJson(res, 200, {
      status: 'ok',
      uptimeSeconds: Math.round((Date.now() - ops.health.startedAt) / 1000),
    });
  } else if (path === '/readyz') {
    const report = await ops.health.readiness();
    sendJson(res, report.ready ? 200 : 503, {
      status: report.ready ? 'ready' : 'not ready',
      checks: report.checks,
    });
  } else {
    sendText(res, 200, ops.metrics.contentType, await ops.metrics.render());
  }
  return true;
}
