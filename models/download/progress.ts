/** Download progress: what the callback receives, a speed/ETA estimator, and a one-line terminal bar. */

export interface DownloadProgress {
  /** Repo path of the file being transferred (the last one, once done). */
  readonly file: string;
  /** 1-based index of that file among the files to fetch, and their count. */
  readonly fileIndex: number;
  readonly fileCount: number;
  readonly fileBytes: number;
  readonly fileTotal: number | undefined;
  /** Bytes present so far over all files (resumed and already-complete files count). */
  readonly bytes: number;
  /** Sum of all file sizes, when the hub reported them. */
  readonly total: number | undefined;
  /** Recent transfer speed (bytes/s, over the last few seconds); 0 before any data. */
  readonly bytesPerSecond: number;
  /** Seconds left at the current speed; undefined when unknown. */
  readonly etaSeconds: number | undefined;
  readonly done: boolean;
}

/** Sliding-window speed: bytes received over the last `windowMs`. */
export class SpeedMeter {
  private readonly samples: { t: number; bytes: number }[] = [];
  private readonly windowMs: number;

  constructor(windowMs = 5000) {
    this.windowMs = windowMs;
  }

  /** Records that `received` bytes (cumulative, this session) had arrived at time `t` (ms). */
  add(t: number, received: number): void {
    this.samples.push({ t, bytes: received });
    while (this.samples.length > 2 && this.samples[0]!.t < t - this.windowMs) this.samples.shift();
  }

  bytesPerSecond(): number {
    const first = this.samples[0];
    const last = this.samples[this.samples.length - 1];
    if (first === undefined || last === undefined || last.t <= first.t) return 0;
    return ((last.bytes - first.bytes) * 1000) / (last.t - first.t);
  }
}

const UNITS = ['B', 'kB', 'MB', 'GB', 'TB'] as const;

/** 1234567 → "1.2 MB" (SI units, as the hub shows sizes). */
export function formatBytes(bytes: number): string {
  let v = bytes;
  let u = 0;
  while (v >= 1000 && u < UNITS.length - 1) {
    v /= 1000;
    u++;
  }
  return u === 0 ? `${Math.round(v)} ${UNITS[u]}` : `${v.toFixed(v < 10 ? 2 : 1)} ${UNITS[u]}`;
}

/** 3725 → "1h02m05s", 65 → "1m05s", 7 → "7s". */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  const pad = (n: number): string => String(n).padStart(2, '0');
  if (h > 0) return `${h}h${pad(m)}m${pad(sec)}s`;
  if (m > 0) return `${m}m${pad(sec)}s`;
  return `${sec}s`;
}

export interface ProgressBarOptions {
  /** Characters inside the brackets. @defaultValue 24 */
  readonly width?: number;
  /** Longest file name shown (longer ones keep their end). @defaultValue 32 */
  readonly maxFileName?: number;
  /**
   * Terminal width: the line is cut to `columns - 1` so a `\r` redraw never wraps. Unset, it is padded to
   * 100 characters so a shorter line still covers the previous one.
   */
  readonly columns?: number;
}

/**
 * One terminal line, e.g. `[#########---------------]  38% 1.02 GB/2.68 GB 41.3 MB/s ETA 40s (3/9 unet/model.onnx_data)`.
 * No newline; the CLI prefixes `\r` to redraw in place. Trailing spaces overwrite a longer previous line.
 */
export function formatProgressBar(p: DownloadProgress, options: ProgressBarOptions = {}): string {
  const width = options.width ?? 24;
  const maxName = options.maxFileName ?? 32;
  const fraction = p.total !== undefined && p.total > 0 ? Math.min(1, p.bytes / p.total) : undefined;
  const filled = fraction === undefined ? 0 : Math.round(fraction * width);
  const bar = `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}]`;
  const pct = fraction === undefined ? '  ?%' : `${String(Math.floor(fraction * 100)).padStart(3)}%`;
  const amount =
    p.total === undefined ? formatBytes(p.bytes) : `${formatBytes(p.bytes)}/${formatBytes(p.total)}`;
  const speed = p.done ? 'done' : `${formatBytes(p.bytesPerSecond)}/s`;
  const eta = p.done ? '' : p.etaSeconds === undefined ? ' ETA ?' : ` ETA ${formatDuration(p.etaSeconds)}`;
  const name = p.file.length > maxName ? `…${p.file.slice(p.file.length - maxName + 1)}` : p.file;
  const line = `${bar} ${pct} ${amount} ${speed}${eta} (${p.fileIndex}/${p.fileCount} ${name})`;
  if (options.columns === undefined) return line.padEnd(100);
  const room = Math.max(1, options.columns - 1);
  return line.length > room ? line.slice(0, room) : line.padEnd(room);
}
