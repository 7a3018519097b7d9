import { ErrorCode } from './errors.ts';

/**
 * How every error code answers over HTTP, in one place for the playground and the ops server:
 * the status, and for refusals that pass with time (429, 503) the Retry-After used when the
 * error itself carries no hint. A `Record` over the enum, so a new code doesn't compile until
 * it is given an answer here.
 */
interface HttpAnswer {
  readonly status: number;
  /** Default Retry-After in seconds; present exactly for the codes worth retrying as they are. */
  readonly retryAfterSeconds?: number;
}

const HTTP_ANSWER: Readonly<Record<ErrorCode, HttpAnswer>> = {
  [ErrorCode.InvalidRequest]: { status: 400 },
  [ErrorCode.UnknownFlag]: { status: 400 },
  [ErrorCode.UnknownModel]: { status: 400 },
  [ErrorCode.PromptTooLong]: { status: 400 },
  [ErrorCode.BannedWord]: { status: 400 },
  [ErrorCode.BadBody]: { status: 400 },
  [ErrorCode.Unauthorized]: { status: 401 },
  [ErrorCode.Forbidden]: { status: 403 },
  [ErrorCode.NotFound]: { status: 404 },
  [ErrorCode.MethodNotAllowed]: { status: 405 },
  [ErrorCode.AlreadyFinished]: { status: 409 },
  [ErrorCode.Cancelled]: { status: 409 },
  [ErrorCode.NotReady]: { status: 409 },
  [ErrorCode.Expired]: { status: 410 },
  [ErrorCode.ModelGone]: { status: 410 },
  [ErrorCode.BodyTooLarge]: { status: 413 },
  [ErrorCode.UnsupportedMediaType]: { status: 415 },
  // Limits that lift as jobs finish: a generation takes seconds, so 10 s is a fair first wait.
  [ErrorCode.RateLimited]: { status: 429, retryAfterSeconds: 10 },
  [ErrorCode.QueueFull]: { status: 429, retryAfterSeconds: 10 },
  // A daily quota lifts at the next UTC midnight; the error carries the exact seconds, this is a floor.
  [ErrorCode.Quota]: { status: 429, retryAfterSeconds: 3600 },
  // Redis reconnects within seconds; asking sooner than that only repeats the failure.
  [ErrorCode.Unavailable]: { status: 503, retryAfterSeconds: 5 },
  [ErrorCode.Redis]: { status: 503, retryAfterSeconds: 5 },
  // Internal failures: the server failed, not the request; retrying as is rarely helps.
  [ErrorCode.Config]: { status: 500 },
  [ErrorCode.ModelLoad]: { status: 500 },
  [ErrorCode.ModelMissingFile]: { status: 500 },
  [ErrorCode.ProviderUnavailable]: { status: 500 },
  [ErrorCode.Inference]: { status: 500 },
  [ErrorCode.Download]: { status: 500 },
  [ErrorCode.RedisMissing]: { status: 500 },
  [ErrorCode.Delivery]: { status: 500 },
  [ErrorCode.ChatApi]: { status: 500 },
  [ErrorCode.Internal]: { status: 500 },
};

/** The HTTP status an error with this code is answered with. */
export function httpStatusOf(code: ErrorCode): number {
  return HTTP_ANSWER[code].status;
}

/**
 * Seconds for the Retry-After header, or undefined for codes not worth retrying as they are. The
 * error's own hint wins over the code's default; either is rounded up to whole seconds, at least 1.
 */
export function retryAfterSecondsOf(code: ErrorCode, hint?: number): number | undefined {
  const fallback = HTTP_ANSWER[code].retryAfterSeconds;
  if (fallback === undefined) return undefined;
  return Math.max(1, Math.ceil(hint ?? fallback));
}
