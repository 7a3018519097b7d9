import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  DISCORD_FILE_ORIGINS,
  fetchFile,
  isAllowedUrl,
  SLACK_FILE_ORIGINS,
} from '../../bots/attachments/fetch.ts';
import { MAX_INIT_IMAGE_BYTES } from '../../core/image-prompt.ts';

/**
 * bots/attachments/fetch.ts against real HTTP servers on loopback: a "platform" file host (allowed)
 * and another host (never allowed), which records every request it gets, headers included.
 */

const PNG = readFileSync(path.join(import.meta.dirname, '../fixtures/img2img-cases/init-a.png'));
const TOKEN = 'xoxb-secret-token-for-the-test';

interface Host {
  server: Server;
  origin: string;
  requests: { path: string; authorization?: string | undefined }[];
  /** Bytes the oversize route managed to write before the client went away. */
  streamed: { sent: number; closedEarly: boolean }[];
}

async function startHost(
  route: (req: IncomingMessage, res: ServerResponse, host: Host) => void,
): Promise<Host> {
  const host = { requests: [], streamed: [] } as unknown as Host;
  host.server = createServer((req, res) => {
    host.requests.push({ path: req.url ?? '', authorization: req.headers.authorization });
    route(req, res, host);
  });
  host.server.listen(0, '127.0.0.1');
  await once(host.server, 'listening');
  host.origin = `http://127.0.0.1:${(host.server.address() as AddressInfo).port}`;
  return host;
}

let platform: Host;
let other: Host;

beforeAll(async () => {
  other = await startHost((_req, res) => {
    res.writeHead(200, { 'content-type': 'image/png', 'content-length': String(PNG.length) });
    res.end(PNG);
  });
  platform = await startHost((req, res, host) => {
    const url = req.url ?? '';
    if (url === '/ok.png') {
      res.writeHead(200, { 'content-type': 'image/png', 'content-length': String(PNG.length) });
      res.end(PNG);
    } else if (url === '/moved') {
      res.writeHead(302, { location: '/ok.png' });
      res.end();
    } else if (url === '/elsewhere') {
      res.writeHead(302, { location: `${other.origin}/stolen.png` });
      res.end();
    } else if (url === '/loop') {
      res.writeHead(302, { location: '/loop' });
      res.end();
    } else if (url === '/declared-huge') {
      res.writeHead(200, { 'content-type': 'image/png', 'content-length': String(MAX_INIT_IMAGE_BYTES + 1) });
      res.end();
    } else if (url === '/endless') {
      // Chunked, no Content-Length, far more than the limit: the reader must stop on its own.
      res.writeHead(200, { 'content-type': 'image/png' });
      const chunk = Buffer.alloc(64 * 1024, 7);
      const record = { sent: 0, closedEarly: false };
      host.streamed.push(record);
      res.on('close', () => {
        record.closedEarly = !res.writableFinished;
      });
      const pump = () => {
        while (record.sent < 200 * 1024 * 1024 && !res.destroyed) {
          record.sent += chunk.length;
          if (!res.write(chunk)) return void res.once('drain', pump);
        }
        res.end();
      };
      pump();
    } else if (url === '/slow') {
      res.writeHead(200, { 'content-type': 'image/png' });
      res.write(PNG.subarray(0, 10));
      // Never ends: the download's deadline must.
    } else {
      res.writeHead(404);
      res.end();
    }
  });
});

afterAll(async () => {
  for (const host of [platform, other]) {
    host.server.closeAllConnections();
    await new Promise((resolve) => host.server.close(resolve));
  }
});

const policy = () => ({ origins: [platform.origin], headers: { authorization: `Bearer ${TOKEN}` } });

describe('fetchFile', () => {
  it('downloads a file from an allowed origin, token included', async () => {
    const bytes = await fetchFile(`${platform.origin}/ok.png`, policy(), 'The file');
    expect(Buffer.from(bytes).equals(PNG)).toBe(true);
    expect(platform.requests.at(-1)).toEqual({ path: '/ok.png', authorization: `Bearer ${TOKEN}` });
  });

  it('follows a redirect on the same origin', async () => {
    const bytes = await fetchFile(`${platform.origin}/moved`, policy(), 'The file');
    expect(Buffer.from(bytes).equals(PNG)).toBe(true);
  });

  it('refuses a URL on any other host without requesting it', async () => {
    const before = other.requests.length;
    await expect(fetchFile(`${other.origin}/ok.png`, policy(), 'The file')).rejects.toThrow(
      /The file is not on the chat platform's own file host \(http:\/\/127\.0\.0\.1:\d+\)/u,
    );
    expect(other.requests.length).toBe(before);
  });

  it('refuses a redirect to another host: the other host never sees a request, nor the token', async () => {
    const before = other.requests.length;
    await expect(fetchFile(`${platform.origin}/elsewhere`, policy(), 'The file')).rejects.toThrow(
      /not on the chat platform's own file host/u,
    );
    expect(other.requests.length).toBe(before);
    expect(other.requests.some((r) => r.authorization !== undefined)).toBe(false);
  });

  it('stops after a few redirects', async () => {
    await expect(fetchFile(`${platform.origin}/loop`, policy(), 'The file')).rejects.toThrow(
      'The file could not be downloaded (redirected 4 times)',
    );
  });

  it('refuses a declared Content-Length over the limit before reading the body', async () => {
    await expect(fetchFile(`${platform.origin}/declared-huge`, policy(), 'The file')).rejects.toThrow(
      `The file is ${MAX_INIT_IMAGE_BYTES + 1} bytes; at most ${MAX_INIT_IMAGE_BYTES} bytes (20 MiB)`,
    );
  });

  it('stops reading a body without Content-Length once it passes the limit', async () => {
    const maxBytes = 1024 * 1024;
    await expect(
      fetchFile(`${platform.origin}/endless`, { ...policy(), maxBytes }, 'The file'),
    ).rejects.toThrow('The file is larger than');
    const record = platform.streamed.at(-1)!;
    await expect.poll(() => record.closedEarly, { timeout: 5000 }).toBe(true);
    // The server was cut off long before its 200 MiB: the client did not keep reading.
    expect(record.sent).toBeLessThan(50 * 1024 * 1024);
  });

  it('gives up at the deadline', async () => {
    const started = performance.now();
    await expect(
      fetchFile(`${platform.origin}/slow`, { ...policy(), timeoutMs: 300 }, 'The file'),
    ).rejects.toThrow('The file took too long to download');
    expect(performance.now() - started).toBeLessThan(5000);
  });
});

describe('isAllowedUrl', () => {
  it('matches exact origins only: https, the host itself, its own port', () => {
    const discord = DISCORD_FILE_ORIGINS;
    expect(isAllowedUrl('https://cdn.discordapp.com/attachments/1/2/a.png?ex=1', discord)).toBe(true);
    expect(isAllowedUrl('https://media.discordapp.net/attachments/1/2/a.png', discord)).toBe(true);
    expect(isAllowedUrl('http://cdn.discordapp.com/attachments/1/2/a.png', discord)).toBe(false);
    expect(isAllowedUrl('https://cdn.discordapp.com.evil.example/a.png', discord)).toBe(false);
    expect(isAllowedUrl('https://cdn.discordapp.com@evil.example/a.png', discord)).toBe(false);
    expect(isAllowedUrl('https://evil.example/?u=https://cdn.discordapp.com/a.png', discord)).toBe(false);
    expect(isAllowedUrl('https://cdn.discordapp.com:8443/a.png', discord)).toBe(false);
    expect(isAllowedUrl('not a url', discord)).toBe(false);
    expect(isAllowedUrl('https://files.slack.com/files-pri/T1-F1/download/a.png', SLACK_FILE_ORIGINS)).toBe(
      true,
    );
    expect(isAllowedUrl('https://slack.com/files-pri/T1-F1/a.png', SLACK_FILE_ORIGINS)).toBe(false);
  });
});
