import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A stand-in for the Hugging Face hub on 127.0.0.1, with its URL layout and behaviour:
 * `/api/models/{repo}/revision/{rev}?blobs=true` lists siblings (size, blobId, lfs.sha256);
 * `/{repo}/resolve/{rev}/{path}` serves regular files and redirects LFS files to `/cdn/{repo}/{path}`
 * on a second server (another origin, like the hub's CDN), which honours `Range`. Errors carry `X-Error-Code` like the hub's.
 */
export interface RepoSpec {
  files: Map<string, Buffer>;
  private?: boolean;
  /** Paths whose advertised sha256 is wrong. */
  badHash?: Set<string>;
  /** Paths whose first N transfers are cut after `cutAt` bytes. */
  cut?: Map<string, { cutAt: number; times: number }>;
  /** The commit its revisions resolve to (besides `main`). @defaultValue COMMIT */
  commit?: string;
}

export const COMMIT = 'c0ffee0000000000000000000000000000000001';
export const TOKEN = 'hf_test_token';
const isLfs = (p: string): boolean => p.endsWith('.onnx') || p.endsWith('.onnx_data');
export const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
export const gitBlobId = (b: Buffer): string =>
  createHash('sha1')
    .update(Buffer.concat([Buffer.from(`blob ${b.length}\0`), b]))
    .digest('hex');

interface Logged {
  url: string;
  range: string | undefined;
  auth: string | undefined;
}

export class FakeHub {
  readonly repos = new Map<string, RepoSpec>();
  readonly log: Logged[] = [];
  private readonly servers: Server[] = [];
  endpoint = '';
  /** LFS downloads redirect to this other origin, as the hub's do to its CDN. */
  cdn = '';

  private async listen(): Promise<string> {
    const server = createServer((req, res) => {
      this.handle(req, res).catch((error: unknown) => {
        res.statusCode = 500;
        res.end(String(error));
      });
    });
    this.servers.push(server);
    await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }

  async start(): Promise<void> {
    this.endpoint = await this.listen();
    this.cdn = await this.listen();
  }

  async stop(): Promise<void> {
    for (const server of this.servers) {
      server.closeAllConnections();
      await new Promise<void>((ok) => server.close(() => ok()));
    }
  }

  private fail(res: ServerResponse, status: number, code: string): void {
    res.writeHead(status, { 'x-error-code': code, 'content-type': 'application/json' });
    res.end(JSON.stringify({ error: code }));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', this.endpoint);
    this.log.push({ url: url.pathname, range: req.headers.range, auth: req.headers.authorization });
    const api = /^\/api\/models\/([^/]+\/[^/]+)\/revision\/([^/]+)$/.exec(url.pathname);
    const resolve = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(url.pathname);
    const cdn = /^\/cdn\/([^/]+)\/(.+)$/.exec(url.pathname);
    if (api !== null || resolve !== null) {
      const repoId = decodeURIComponent((api ?? resolve)![1]!);
      const rev = decodeURIComponent((api ?? resolve)![2]!);
      const repo = this.repos.get(repoId);
      if (repo === undefined) return this.fail(res, 404, 'RepoNotFound');
      if (repo.private === true && req.headers.authorization !== `Bearer ${TOKEN}`) {
        return this.fail(res, 401, 'RepoNotFound');
      }
      const commit = repo.commit ?? COMMIT;
      if (rev !== 'main' && rev !== commit) return this.fail(res, 404, 'RevisionNotFound');
      if (api !== null) {
        const siblings = [...repo.files].map(([p, b]) => ({
          rfilename: p,
          size: b.length,
          blobId: gitBlobId(b),
          ...(isLfs(p)
            ? {
                lfs: {
                  sha256: repo.badHash?.has(p) === true ? sha256(Buffer.from('not it')) : sha256(b),
                  size: b.length,
                  pointerSize: 134,
                },
              }
            : {}),
        }));
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ id: repoId, sha: commit, siblings }));
        return;
      }
      const path = resolve![3]!.split('/').map(decodeURIComponent).join('/');
      const body = repo.files.get(path);
      if (body === undefined) return this.fail(res, 404, 'EntryNotFound');
      if (isLfs(path)) {
        res.writeHead(302, { location: `${this.cdn}/cdn/${encodeURIComponent(repoId)}/${resolve![3]!}` });
        res.end();
        return;
      }
      return this.serve(req, res, repo, path, body);
    }
    if (cdn !== null) {
      const repoId = decodeURIComponent(cdn[1]!);
      const path = cdn[2]!.split('/').map(decodeURIComponent).join('/');
      const repo = this.repos.get(repoId);
      const body = repo?.files.get(path);
      if (repo === undefined || body === undefined) return this.fail(res, 404, 'EntryNotFound');
      return this.serve(req, res, repo, path, body);
    }
    this.fail(res, 404, 'NotFound');
  }

  private serve(req: IncomingMessage, res: ServerResponse, repo: RepoSpec, path: string, body: Buffer): void {
    const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    const start = m === null ? 0 : Number(m[1]);
    if (start >= body.length && m !== null) {
      res.writeHead(416, { 'content-range': `bytes */${body.length}` });
      res.end();
      return;
    }
    const slice = body.subarray(start);
    const headers: Record<string, string | number> = {
      'content-length': slice.length,
      'accept-ranges': 'bytes',
    };
    if (m !== null) headers['content-range'] = `bytes ${start}-${body.length - 1}/${body.length}`;
    res.writeHead(m === null ? 200 : 206, headers);
    const cut = repo.cut?.get(path);
    if (cut !== undefined && cut.times > 0) {
      cut.times--;
      // Send part of the body, then drop the connection mid-transfer.
      res.write(slice.subarray(0, Math.max(0, cut.cutAt - start)), () => res.socket?.destroy());
      return;
    }
    res.end(slice);
  }
}
