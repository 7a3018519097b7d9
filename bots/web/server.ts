import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { isLoopbackHost } from '../../core/config.ts';
import { ErrorCode } from '../../core/errors.ts';
import { safeUrl } from '../logger.ts';
import {
  HttpError,
  handleOps,
  methodNotAllowed,
  notFound,
  SECURITY_HEADERS,
  sendError,
  sendText,
} from '../ops/http.ts';
import { listen, type RunningServer } from '../ops/server.ts';
import { Access, checkOrigin, Identities, isSecure } from './auth.ts';
import { ANY_JOB_ID_RE, type PlaygroundOptions, WEB_JOB_ID_RE } from './options.ts';
import { playgroundRoutes } from './routes.ts';
import { isAsset, isStaticPath, loadStaticFiles, serveStatic } from './static.ts';

export {
  PLAYGROUND_CHANNEL,
  type PlaygroundOptions,
  type PlaygroundService,
  WEB_JOB_ID_RE,
} from './options.ts';

/**
 * The playground's HTTP server: probes, origin check, the login link and token, identities, then the
 * static page (static.ts) or an API route (routes.ts).
 */
export async function startPlayground(options: PlaygroundOptions): Promise<RunningServer> {
  const openLoopback = options.token === undefined;
  if (openLoopback && !isLoopbackHost(options.host)) {
    throw new Error(`PLAYGROUND_TOKEN is required when HOST (${options.host}) is not a loopback address`);
  }
  const access = new Access(options.token);
  const identities = new Identities({
    ...(options.identitySecret === undefined ? {} : { secret: options.identitySecret }),
    ...(options.identityLimit === undefined ? {} : { limit: options.identityLimit }),
  });
  const files = await loadStaticFiles();
  const log = options.log;
  const { routes, gone } = playgroundRoutes(options);

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://playground.invalid');
    } catch {
      throw new HttpError(ErrorCode.InvalidRequest, 'Malformed request URL.');
    }
    const path = url.pathname;
    // Probes stay open: container healthchecks and load balancers carry no token.
    if (path === '/healthz' || path === '/readyz') {
      await handleOps(req, res, path, options);
      return;
    }
    const refused = checkOrigin(req, openLoopback);
    if (refused !== undefined) throw new HttpError(ErrorCode.Forbidden, refused);

    // The login link: check the token, set the session cookie, and drop the token from the address bar.
    const loginToken = url.searchParams.get('token');
    if (path === '/' && loginToken !== null && access.required) {
      const session = access.login(loginToken, isSecure(req));
      if (session === undefined) {
        sendText(res, 401, 'text/plain; charset=utf-8', 'Wrong playground token.\n');
        return;
      }
      res.writeHead(303, {
        ...SECURITY_HEADERS,
        location: '/',
        'set-cookie': session,
        'cache-control': 'no-store',
      });
      res.end();
      return;
    }
    if (!access.allows(req)) {
      if (path === '/' || path === '/index.html') {
        // A person at the page, not an API client: say how to get in.
        sendText(
          res,
          401,
          'text/plain; charset=utf-8',
          'This playground needs its token. Open the login link once: /?token=<PLAYGROUND_TOKEN>\n',
        );
        return;
      }
      throw new HttpError(
        ErrorCode.Unauthorized,
        'This playground needs its token: open /?token=<PLAYGROUND_TOKEN> once, or send Authorization: Bearer <token>.',
        { 'www-authenticate': 'Bearer realm="imagine playground"' },
      );
    }
    if (path === '/metrics') {
      await handleOps(req, res, path, options);
      return;
    }

    // Assets need no identity; the page and the API do (the page's first load issues the cookie).
    const asset = isAsset(path);
    const identity = asset ? undefined : await identities.identify(req);
    if (identity?.setCookie !== undefined) res.setHeader('set-cookie', identity.setCookie);

    if (isStaticPath(path)) {
      serveStatic(req, res, path, files);
      return;
    }

    for (const route of routes) {
      const match = route.pattern.exec(path);
      if (match === null) continue;
      const params = match.slice(1).map((p) => safeDecode(p));
      if (path.startsWith('/api/jobs/') && !WEB_JOB_ID_RE.test(params[0] ?? '')) {
        const id = params[0] ?? '';
        if (ANY_JOB_ID_RE.test(id)) throw gone(id);
        throw new HttpError(ErrorCode.NotFound, `No job "${id}": job ids look like web-abc123.`);
      }
      const method = req.method === 'HEAD' && route.methods.GET !== undefined ? 'GET' : (req.method ?? 'GET');
      const run = route.methods[method];
      if (run === undefined) {
        const allowed = Object.keys(route.methods);
        if (allowed.includes('GET')) allowed.push('HEAD');
        throw methodNotAllowed(allowed);
      }
      await run({ req, res, url, user: identity?.user ?? '', params });
      return;
    }
    throw notFound(`Nothing at ${path}.`);
  };

  const server = createServer((req, res) => {
    const started = performance.now();
    res.on('finish', () =>
      log.debug(
        {
          method: req.method,
          url: safeUrl(req.url ?? '/'),
          status: res.statusCode,
          ms: Math.round(performance.now() - started),
        },
        'http request',
      ),
    );
    handle(req, res).catch((error: unknown) =>
      sendError(res, error, log, { path: safeUrl(req.url ?? '/'), method: req.method }),
    );
  });
  // A client that never finishes sending headers or a body must not hold a socket forever.
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;
  server.maxHeadersCount = 100;
  const running = await listen(server, options.host, options.port);
  return {
    ...running,
    close: async () => {
      options.surface.close();
      await running.close();
    },
  };
}

function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}
