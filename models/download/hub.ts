/**
 * The bits of the Hugging Face Hub HTTP API the downloader uses:
 * - `GET {endpoint}/api/models/{repo}/revision/{revision}?blobs=true` → `{sha, siblings: [{rfilename, size,
 *   blobId, lfs?: {sha256, size}}]}` (file list, sizes, LFS sha256, and the commit the revision points to);
 * - `GET {endpoint}/{repo}/resolve/{commit}/{path}` → the file (LFS files redirect to a CDN).
 * Errors carry the hub's `X-Error-Code` header (RepoNotFound, RevisionNotFound, GatedRepo, EntryNotFound).
 */

import { DownloadError } from './errors.ts';

export type FetchLike = (input: string, init?: RequestInit) => Promise<Response>;

export interface HubFile {
  /** Path inside the repo, `/`-separated. */
  readonly path: string;
  readonly size: number | undefined;
  /** sha256 of the content, for LFS files. */
  readonly sha256: string | undefined;
  /** Git blob id (sha1 of `blob <size>\0<content>`), for regular files. */
  readonly gitBlobId: string | undefined;
}

export interface HubRepoInfo {
  readonly repo: string;
  readonly revision: string;
  /** The commit the revision resolved to (downloads use it, so every file comes from one commit). */
  readonly commit: string | undefined;
  readonly files: readonly HubFile[];
}

const REPO_ID = /^[A-Za-z0-9][A-Za-z0-9._-]*\/[A-Za-z0-9][A-Za-z0-9._-]*$/;

export function validateRepoId(repo: string): void {
  if (!REPO_ID.test(repo) || repo.includes('..')) {
    throw new DownloadError('invalid-repo', `"${repo}" is not a Hugging Face repo id; expected owner/name`, {
      context: { repo },
    });
  }
}

function repoPath(repo: string): string {
  return repo.split('/').map(encodeURIComponent).join('/');
}

export function revisionUrl(endpoint: string, repo: string, revision: string): string {
  return `${trimSlash(endpoint)}/api/models/${repoPath(repo)}/revision/${encodeURIComponent(revision)}?blobs=true`;
}

export function resolveUrl(endpoint: string, repo: string, revision: string, path: string): string {
  const p = path.split('/').map(encodeURIComponent).join('/');
  return `${trimSlash(endpoint)}/${repoPath(repo)}/resolve/${encodeURIComponent(revision)}/${p}`;
}

function trimSlash(s: string): string {
  return s.endsWith('/') ? s.slice(0, -1) : s;
}

export function authHeaders(token: string | undefined): Record<string, string> {
  const h: Record<string, string> = { 'user-agent': 'imagine-bot-downloader/1' };
  if (token !== undefined && token !== '') h.authorization = `Bearer ${token}`;
  return h;
}

/** Turns a failed hub response into a DownloadError whose message says what to do. */
export function hubError(
  res: Response,
  ctx: { repo: string; revision: string; file?: string; hasToken: boolean; endpoint: string },
): DownloadError {
  const code = res.headers.get('x-error-code') ?? '';
  const status = res.status;
  const page = `${trimSlash(ctx.endpoint)}/${ctx.repo}`;
  const context = { repo: ctx.repo, revision: ctx.revision, file: ctx.file, hubErrorCode: code || undefined };
  if (status === 401) {
    const hint = ctx.hasToken
      ? 'The token in HF_TOKEN was rejected or has no access to it.'
      : 'If it is private or gated, set HF_TOKEN to a Hugging Face access token with read access.';
    return new DownloadError(
      'unauthorized',
      `Hugging Face refused access to ${ctx.repo} (HTTP 401): it is private, gated, or does not exist. ${hint}`,
      { status, context },
    );
  }
  if (status === 403) {
    const gated = code === 'GatedRepo' || /gated|restricted/i.test(res.headers.get('x-error-message') ?? '');
    return gated
      ? new DownloadError(
          'gated',
          `${ctx.repo} is gated (HTTP 403): accept its conditions at ${page} with your account, then set HF_TOKEN ` +
            'to a token of that account.',
          { status, context },
        )
      : new DownloadError(
          'unauthorized',
          `Hugging Face refused access to ${ctx.repo} (HTTP 403). ${ctx.hasToken ? 'The token in HF_TOKEN lacks read access.' : 'Set HF_TOKEN to a token with read access.'}`,
          { status, context },
        );
  }
  if (status === 404) {
    if (code === 'RevisionNotFound') {
      return new DownloadError(
        'not-found',
        `Revision "${ctx.revision}" not found in ${ctx.repo} (HTTP 404).`,
        {
          status,
          context,
        },
      );
    }
    if (code === 'EntryNotFound' && ctx.file !== undefined) {
      return new DownloadError(
        'not-found',
        `${ctx.file} not found in ${ctx.repo}@${ctx.revision} (HTTP 404).`,
        {
          status,
          context,
        },
      );
    }
    return new DownloadError(
      'not-found',
      `Repo ${ctx.repo} or revision "${ctx.revision}" not found on ${trimSlash(ctx.endpoint)} (HTTP 404). Check the spelling.`,
      { status, context },
    );
  }
  return new DownloadError(
    'http',
    `Hugging Face answered HTTP ${status}${res.statusText ? ` ${res.statusText}` : ''} for ${ctx.file ?? ctx.repo}.`,
    { status, context },
  );
}

/** Statuses worth retrying: rate limits and server-side trouble. */
export function isRetryableStatus(status: number): boolean {
  return status === 408 || status === 429 || status >= 500;
}

interface Sibling {
  rfilename?: unknown;
  size?: unknown;
  blobId?: unknown;
  lfs?: { sha256?: unknown; size?: unknown } | null;
}

/** Lists a repo's files at a revision (with sizes and hashes). */
export async function fetchRepoInfo(opts: {
  readonly repo: string;
  readonly revision: string;
  readonly endpoint: string;
  readonly token: string | undefined;
  readonly fetchImpl: FetchLike;
  readonly signal?: AbortSignal | undefined;
}): Promise<HubRepoInfo> {
  const url = revisionUrl(opts.endpoint, opts.repo, opts.revision);
  let res: Response;
  try {
    res = await opts.fetchImpl(url, {
      headers: authHeaders(opts.token),
      ...(opts.signal === undefined ? {} : { signal: opts.signal }),
    });
  } catch (error) {
    throw new DownloadError(
      'network',
      `Could not reach ${trimSlash(opts.endpoint)}: ${(error as Error).message}`,
      {
        cause: error,
        context: { url },
      },
    );
  }
  if (!res.ok) {
    await res.body?.cancel();
    throw hubError(res, {
      repo: opts.repo,
      revision: opts.revision,
      hasToken: opts.token !== undefined && opts.token !== '',
      endpoint: opts.endpoint,
    });
  }
  const body = (await res.json()) as { sha?: unknown; siblings?: unknown };
  if (!Array.isArray(body.siblings)) {
    throw new DownloadError('http', `Unexpected answer from ${url}: no file list (siblings).`, {
      context: { url },
    });
  }
  const files: HubFile[] = [];
  for (const s of body.siblings as Sibling[]) {
    if (typeof s.rfilename !== 'string') continue;
    const lfs = s.lfs ?? undefined;
    const size = typeof s.size === 'number' ? s.size : typeof lfs?.size === 'number' ? lfs.size : undefined;
    files.push({
      path: s.rfilename,
      size,
      sha256: typeof lfs?.sha256 === 'string' ? lfs.sha256.toLowerCase() : undefined,
      gitBlobId: lfs === undefined && typeof s.blobId === 'string' ? s.blobId.toLowerCase() : undefined,
    });
  }
  return {
    repo: opts.repo,
    revision: opts.revision,
    commit: typeof body.sha === 'string' ? body.sha : undefined,
    files,
  };
}
