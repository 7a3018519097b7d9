/**
 * Every error the product raises has a code from this one enum. Two families:
 * - `UserError`: the user's input or request can't be served; its message is shown verbatim.
 * - everything else is internal: logged with an error id, and the user sees only that id.
 */
export enum ErrorCode {
  // User-facing (shown verbatim)
  InvalidRequest = 'E_INVALID_REQUEST',
  UnknownFlag = 'E_UNKNOWN_FLAG',
  PromptTooLong = 'E_PROMPT_TOO_LONG',
  RateLimited = 'E_RATE_LIMITED',
  QueueFull = 'E_QUEUE_FULL',
  NotFound = 'E_NOT_FOUND',
  Expired = 'E_EXPIRED',
  Forbidden = 'E_FORBIDDEN',
  AlreadyFinished = 'E_ALREADY_FINISHED',
  Cancelled = 'E_CANCELLED',
  /** `--model` names a model this deployment does not list (MODELS). */
  UnknownModel = 'E_UNKNOWN_MODEL',
  /** A grid's model is no longer served (removed from MODELS, or its files changed). */
  ModelGone = 'E_MODEL_GONE',
  /** A service the request needs (the queue's Redis) can't be reached right now; retry later (HTTP 503). */
  Unavailable = 'E_UNAVAILABLE',
  /** The prompt holds a word banned here (the word is never echoed). */
  BannedWord = 'E_BANNED_WORD',
  /** The user's daily image quota in this scope is used up; retry after the reset. */
  Quota = 'E_QUOTA',
  // HTTP-level refusals of the playground and ops servers (shown verbatim)
  BadBody = 'E_BAD_BODY',
  BodyTooLarge = 'E_BODY_TOO_LARGE',
  UnsupportedMediaType = 'E_UNSUPPORTED_MEDIA_TYPE',
  MethodNotAllowed = 'E_METHOD_NOT_ALLOWED',
  Unauthorized = 'E_UNAUTHORIZED',
  /** The job exists but its images don't yet (queued or running). */
  NotReady = 'E_NOT_READY',
  // Internal (logged with an id)
  Config = 'E_CONFIG',
  ModelLoad = 'E_MODEL_LOAD',
  ModelMissingFile = 'E_MODEL_MISSING_FILE',
  ProviderUnavailable = 'E_PROVIDER_UNAVAILABLE',
  Inference = 'E_INFERENCE',
  Download = 'E_DOWNLOAD',
  Redis = 'E_REDIS',
  RedisMissing = 'E_REDIS_MISSING',
  Delivery = 'E_DELIVERY',
  ChatApi = 'E_CHAT_API',
  Internal = 'E_INTERNAL',
}

export type ErrorContext = Readonly<Record<string, unknown>>;

/** Base of all project errors. The name carries the code, like `DiscordAPIError[50035]`. */
export class CodedError extends Error {
  readonly code: ErrorCode;
  readonly context: ErrorContext;

  constructor(code: ErrorCode, message: string, options: { cause?: unknown; context?: ErrorContext } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.context = options.context ?? {};
    this.name = `${new.target.name}[${code}]`;
  }
}

/** A problem with what the user asked for. Its message is written for the user and shown verbatim. */
export class UserError extends CodedError {
  /** Seconds after which retrying may succeed (queue full, rate limited, unavailable). */
  readonly retryAfterSeconds: number | undefined;

  constructor(
    code: ErrorCode,
    message: string,
    options: { cause?: unknown; context?: ErrorContext; retryAfterSeconds?: number } = {},
  ) {
    super(code, message, options);
    this.retryAfterSeconds = options.retryAfterSeconds;
  }
}

/** An internal failure. The user sees only `errorId`; the log has everything. */
export class InternalError extends CodedError {
  readonly errorId: string;

  constructor(
    code: ErrorCode,
    message: string,
    options: { cause?: unknown; context?: ErrorContext; errorId?: string } = {},
  ) {
    super(code, message, options);
    this.errorId = options.errorId ?? newErrorId();
  }
}

export function isUserError(error: unknown): error is UserError {
  return error instanceof UserError;
}

/** Short, log-greppable id (e.g. `err_k3j9x2a7q`). Not a secret; just unique enough to find a log line. */
export function newErrorId(random: () => number = Math.random): string {
  let id = '';
  for (let i = 0; i < 10; i++) id += Math.floor(random() * 36).toString(36);
  return `err_${id}`;
}

/** Normalises anything thrown into a CodedError, keeping coded errors as they are. */
export function asCodedError(error: unknown): CodedError {
  if (error instanceof CodedError) return error;
  if (error instanceof Error) return new InternalError(ErrorCode.Internal, error.message, { cause: error });
  return new InternalError(ErrorCode.Internal, String(error), { cause: error });
}

/** The one text a user sees for an internal failure: only the id that finds the log line. */
export function somethingWentWrong(errorId: string | undefined): string {
  return errorId === undefined
    ? 'Something went wrong on our side. Please try again.'
    : `Something went wrong on our side (error id ${errorId}). Please try again; if it keeps happening, give this id to an admin.`;
}

/** What a user may be shown about any error: the message of a UserError, else only an error id. */
export interface PublicError {
  readonly code: ErrorCode;
  readonly message: string;
  readonly errorId?: string;
  readonly retryAfterSeconds?: number;
}

export function toPublicError(error: unknown): PublicError {
  const coded = asCodedError(error);
  if (coded instanceof UserError) {
    return coded.retryAfterSeconds === undefined
      ? { code: coded.code, message: coded.message }
      : { code: coded.code, message: coded.message, retryAfterSeconds: coded.retryAfterSeconds };
  }
  const errorId = coded instanceof InternalError ? coded.errorId : newErrorId();
  return {
    code: coded.code,
    message: somethingWentWrong(errorId),
    errorId,
  };
}

/** The minimal logger the error sink needs (pino satisfies it). */
export interface ErrorLogger {
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

/**
 * The single error sink: every caught error that ends a user-visible action goes through here.
 * User errors are logged at warn without a stack; internal errors at error with their id and cause,
 * so the id the user sees finds the log line.
 */
export function reportError(log: ErrorLogger, error: unknown, context: ErrorContext = {}): PublicError {
  const coded = asCodedError(error);
  const shown = toPublicError(coded);
  if (coded instanceof UserError) {
    log.warn({ ...context, code: coded.code, userMessage: coded.message }, 'user error');
  } else {
    log.error(
      { ...context, code: coded.code, errorId: shown.errorId, err: coded, errContext: coded.context },
      coded.message,
    );
  }
  return shown;
}
