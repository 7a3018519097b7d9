import type { IncomingMessage, ServerResponse } from 'node:http';
import { type CodedError, ErrorCode, type ErrorLogger, reportError, UserError } from '../../core/errors.ts';
import type { Health } from './health.ts';
import type { Metrics } from './metrics.ts';

/**
 * Small HTTP helpers shared by the playground server and the worker's ops server: JSON replies,
 * bounded body reading, and one mapping from project errors to status codes.
 */

/** An HTTP-level refusal (bad method, body too large, …) with the same JSON shape as user errors. */
export class HttpError extends Error {
  readonly status: number;
  readonly code: string;
  readonly headers: Readonly<Record<string, string>>;
  constructor(status: number, code: string, message: string, headers: Readonly<Record<string, string>> = {}) {
    super(message);
    this.name = `HttpError[${status}]`;
    this.status = status;
    this.code = code;
    this.headers = headers;
  }
}

/** HTTP status for each user-facing error code; anything else is a 500 with an error id. */
const USER_STATUS: Readonly<Partial<Record<ErrorCode, number>>> = {
  [ErrorCode.InvalidRequest]: 400,
  [ErrorCode.UnknownFlag]: 400,
  [ErrorCode.PromptTooLong]: 400,
  [ErrorCode.RateLimited]: 429,
  [ErrorCode.QueueFull]: 429,
  [ErrorCode.NotFound]: 404,
  [ErrorCode.Expired]: 410,
  [ErrorCode.Forbidden]: 403,
  [ErrorCode.AlreadyFinished]: 409,
  [ErrorCode.Cancelled]: 409,
  [ErrorCode.Unavailable]: 503,
};

export function statusForUserError(error: CodedError): number {
  return USER_STATUS[error.code] ?? 400;
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
 * Answers any error as `{error: {code, message}}`: HttpError and UserError with their 4xx status
 * (429s and E_UNAVAILABLE's 503 with Retry-After), everything else as 500 through the error sink, with only an error id shown.
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
  const shown = reportError(log, error, context);
  if (error instanceof UserError) {
    const status = statusForUserError(error);
    const headers: Record<string, string> = {};
    if (status === 429 || status === 503)
      headers['retry-after'] = String(Math.max(1, Math.ceil(error.retryAfterSeconds ?? 5)));
    const body: Record<string, unknown> = { code: shown.code, message: shown.message };
    if (shown.retryAfterSeconds !== undefined) body.retryAfterSeconds = shown.retryAfterSeconds;
    sendJson(res, status, { error: body }, headers);
    return;
  }
  sendJson(res, 500, { error: { code: shown.code, message: shown.message, errorId: shown.errorId } });
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
    throw new HttpError(413, 'E_BODY_TOO_LARGE', `The request body is larger than ${limit} bytes.`);
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
        reject(new HttpError(413, 'E_BODY_TOO_LARGE', `The request body is larger than ${limit} bytes.`));
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
      reject(new HttpError(400, 'E_BAD_BODY', `The request body could not be read: ${error.message}`));
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
    throw new HttpError(415, 'E_UNSUPPORTED_MEDIA_TYPE', 'Send the body as application/json.');
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    const detail = error instanceof Error ? error.message : String(error);
    throw new HttpError(400, ErrorCode.InvalidRequest, `The body is not valid JSON: ${detail}`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new HttpError(400, ErrorCode.InvalidRequest, 'The body must be a JSON object.');
  }
  return value as Record<string, unknown>;
}

export function methodNotAllowed(allowed: readonly string[]): HttpError {
  return new HttpError(405, 'E_METHOD_NOT_ALLOWED', `Use ${allowed.join(' or ')} for this path.`, {
    allow: allowed.join(', '),
  });
}

export function notFound(message = 'No such path.'): HttpError {
  return new HttpError(404, ErrorCode.NotFound, message);
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
