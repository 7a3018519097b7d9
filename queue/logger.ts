import type { ErrorLogger } from '../core/errors.ts';

/** The logger the queue layer writes to; a pino logger satisfies it. */
export interface QueueLogger extends ErrorLogger {
  info(obj: object, msg: string): void;
  debug(obj: object, msg: string): void;
}

/** Discards everything (tests, benchmarks). */
export const silentLogger: QueueLogger = {
  info: () => {},
  debug: () => {},
  warn: () => {},
  error: () => {},
};
