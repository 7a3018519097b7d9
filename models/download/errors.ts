import { CodedError, ErrorCode, type ErrorContext } from '../../core/errors.ts';

/** Why a download failed; each reason has a message that says what to do. */
export type DownloadFailure =
  | 'invalid-repo'
  | 'unauthorized'
  | 'gated'
  | 'not-found'
  | 'not-sd-onnx'
  | 'unknown-catalog-entry'
  | 'catalog-mismatch'
  | 'size-mismatch'
  | 'hash-mismatch'
  | 'network'
  | 'http'
  | 'aborted';

/** A model download failure (code E_DOWNLOAD). The message is written for the person running the command. */
export class DownloadError extends CodedError {
  readonly reason: DownloadFailure;
  /** HTTP status, when the failure came from a response. */
  readonly status: number | undefined;

  constructor(
    reason: DownloadFailure,
    message: string,
    options: { cause?: unknown; context?: ErrorContext; status?: number } = {},
  ) {
    super(ErrorCode.Download, message, {
      ...(options.cause === undefined ? {} : { cause: options.cause }),
      context: {
        reason,
        ...(options.status === undefined ? {} : { status: options.status }),
        ...options.context,
      },
    });
    this.reason = reason;
    this.status = options.status;
  }
}
