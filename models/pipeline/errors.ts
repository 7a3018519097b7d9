import { ErrorCode, UserError } from '../../core/errors.ts';

/** The user errors every pipeline part may raise: a bad request, or a cancel between steps. */

export function invalid(message: string, context: Record<string, unknown> = {}): UserError {
  return new UserError(ErrorCode.InvalidRequest, message, { context });
}

export function cancelled(): UserError {
  return new UserError(ErrorCode.Cancelled, 'Generation was cancelled.');
}
