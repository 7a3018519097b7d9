import type { Surface } from '../../core/jobspec.ts';
import type { GridRecord, JobState } from '../../queue/index.ts';
import type { ControlRows, Markup } from '../surface.ts';

/** The types of `/imagine history` (history.ts), apart so that context.ts can name the index. */

/** Where a user's grids are listed: one user in one channel of one workspace, on one surface. */
export interface HistoryScope {
  readonly surface: Surface;
  readonly workspace: string;
  readonly channel: string;
  readonly user: string;
}

/** The index of recent record ids per scope (bots/history/store.ts keeps it in Redis). */
export interface HistoryIndex {
  add(scope: HistoryScope, recordId: string, at: number): Promise<void>;
  /** Newest first, at most `limit`. */
  recent(scope: HistoryScope, limit: number): Promise<string[]>;
  forget(scope: HistoryScope, recordIds: readonly string[]): Promise<void>;
}

/** Who asks, and where. */
export interface HistoryQuery {
  readonly surface: Surface;
  readonly user: string;
  readonly workspace?: string;
  readonly channel: string;
  /** Grids to show. @defaultValue HISTORY_DEFAULT_LIMIT */
  readonly limit?: number;
}

/** What a surface calls for `/imagine history` (ConversationService.history). */
export type HistoryHandler = (query: HistoryQuery, markup: Markup) => Promise<HistoryView>;

export interface HistoryEntry {
  readonly record: GridRecord;
  readonly status: JobState;
  /** The caption prompt (the shared prompt, or the stem of refined prompts). */
  readonly prompt: string;
  /** When it was asked for (ms since the epoch). */
  readonly requestedAt: number;
  /** One line in the surface's markup: number, prompt, kind, status, when. */
  readonly text: string;
  /** Its buttons: the grid's when done, cancel while queued or running, none after a failure. */
  readonly controls: ControlRows;
}

export interface HistoryView {
  /** Newest first. */
  readonly entries: readonly HistoryEntry[];
  /** The heading (or, with no entries, the "nothing yet" line), in the surface's markup. */
  readonly text: string;
}
