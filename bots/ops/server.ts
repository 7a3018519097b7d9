import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from '../logger.ts';
import { handleOps, notFound, type OpsRoutes, sendError } from './http.ts';

export interface OpsServerOptions extends OpsRoutes {
  readonly host: string;
  /** 0 picks a free port. */
  readonly port: number;
  /**
   * When `port` is taken, try the next ones up to this many ports above it (several workers on one
   * host with the default port). 0: the port must be free. @defaultValue 0
   */
  readonly nextFree?: number;
  readonly log: Logger;
}

export interface RunningServer {
  /** Base URL actually bound, e.g. `http://127.0.0.1:8788`. */
  readonly url: string;
  readonly port: number;
  close(): Promise<void>;
}

/** The worker's HTTP surface: health, readiness and metrics only. */
export async function startOpsServer(options: OpsServerOptions): Promise<RunningServer> {
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    handleOps(req, res, path, options)
      .then((handled) => {
        if (!handled) throw notFound();
      })
      .catch((error: unknown) => sendError(res, error, options.log, { path }));
  });
  const last = options.port === 0 ? 0 : Math.min(65535, options.port + (options.nextFree ?? 0));
  for (let port = options.port; ; port++) {
    try {
      return await listen(server, options.host, port);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EADDRINUSE' || port >= last) throw error;
    }
  }
}

export function urlHost(host: string): string {
  if (host === '0.0.0.0' || host === '::' || host === '') return '127.0.0.1';
  return host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
}

/** Listens and returns the bound URL; `close()` stops accepting and ends idle keep-alive sockets. */
export function listen(server: Server, host: string, port: number): Promise<RunningServer> {
  // Clients keep an idle socket until just before the advertised keep-alive timeout, on coarse
  // timers (undici: 1 s ticks). With a 5 s timeout a busy client reuses a socket the server has
  // just closed, and the request fails with ECONNRESET (seen in CI under load). With a long idle
  // timeout the client, not the server, ends idle connections in practice; close() still ends
  // idle sockets at once.
  server.keepAliveTimeout = 65_000;
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      const bound = (server.address() as AddressInfo).port;
      let closing: Promise<void> | undefined;
      resolve({
        url: `http://${urlHost(host)}:${bound}`,
        port: bound,
        close: () => {
          closing ??= new Promise<void>((done) => {
            server.close(() => done());
            server.closeIdleConnections();
            // Streams (SSE) and slow clients must not hold shutdown hostage.
            setTimeout(() => server.closeAllConnections(), 2000).unref();
          });
          return closing;
        },
      });
    });
  });
}
