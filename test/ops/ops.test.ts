import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configSecrets, createLogger, safeUrl } from '../../bots/logger.ts';
import { Health } from '../../bots/ops/health.ts';
import { createMetrics } from '../../bots/ops/metrics.ts';
import { type RunningServer, startOpsServer } from '../../bots/ops/server.ts';
import { loadConfig } from '../../core/config.ts';
import { createQueueProbe } from '../../queue/probe.ts';
import { startTestRedis, type TestRedis, uniquePrefix } from '../helpers/redis.ts';

function capture(): { stream: Writable; text: () => string } {
  let text = '';
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      text += chunk.toString();
      done();
    },
  });
  return { stream, text: () => text };
}

describe('logger', () => {
  it('writes JSON lines and redacts secrets wherever they sit', () => {
    const out = capture();
    const log = createLogger({ role: 'all', destination: out.stream });
    const secrets = [
      'S-discord',
      'S-slack-bot',
      'S-slack-app',
      'S-signing',
      'S-playground',
      'S-bearer',
      'S-interaction',
      'S-pw',
    ];
    log.info(
      {
        config: {
          DISCORD_TOKEN: secrets[0],
          SLACK_BOT_TOKEN: secrets[1],
          SLACK_APP_TOKEN: secrets[2],
          SLACK_SIGNING_SECRET: secrets[3],
          PLAYGROUND_TOKEN: secrets[4],
        },
        req: { headers: { authorization: `Bearer ${secrets[5]}`, cookie: 'imagine_session=abc' } },
        jobId: 'web-1',
        messageRef: { token: secrets[6] },
        password: secrets[7],
      },
      'something happened',
    );
    const line = JSON.parse(out.text().trim()) as Record<string, unknown>;
    expect(line).toMatchObject({ level: 'info', role: 'all', jobId: 'web-1', msg: 'something happened' });
    for (const secret of secrets) expect(out.text()).not.toContain(secret);
    expect(out.text()).not.toContain('imagine_session=abc');
    expect(out.text()).toContain('[redacted]');
  });

  it('blanks known secret values anywhere in a line, and drops Redis command arguments from errors', () => {
    const out = capture();
    const password = 'p@ss:"w\\rd/91';
    const log = createLogger({
      destination: out.stream,
      secrets: ['hf_tokenvalue123', password, undefined, 'ab'],
    });
    // What ioredis attaches to a failed handshake, and secrets inside texts no field name can catch.
    const error = Object.assign(new Error(`WRONGPASS for ${password}`), {
      command: { name: 'hello', args: ['3', 'AUTH', 'default', password] },
    });
    log.warn({ err: error, error: { command: { name: 'auth', args: ['x-y-z-arg'] } } }, 'redis error');
    log.info(
      { detail: JSON.stringify({ url: `https://hub/?t=hf_tokenvalue123` }) },
      'nested hf_tokenvalue123',
    );
    log.info({ url: `redis://:${encodeURIComponent(password)}@host` }, 'encoded');
    const text = out.text();
    for (const secret of [
      'hf_tokenvalue123',
      password,
      JSON.stringify(password),
      encodeURIComponent(password),
      'x-y-z-arg',
    ])
      expect(text).not.toContain(secret);
    const lines = text
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines[0]).toMatchObject({ err: { message: 'WRONGPASS for [redacted]', command: 'hello' } });
    expect(lines[1]?.msg).toBe('nested [redacted]');
    // Too short to search for without blanking ordinary words.
    expect(text).toContain('"level"');
  });

  it('configSecrets lists every secret setting, and the password inside REDIS_URL raw and decoded', () => {
    const config = loadConfig({
      REDIS_URL: 'redis://user:p%40ss%2Fword@host:6379',
      PLAYGROUND_TOKEN: 'pt-1234',
      SLACK_BOT_TOKEN: 'xoxb-1',
      SLACK_APP_TOKEN: 'xapp-1',
      SLACK_SIGNING_SECRET: 'sign-1',
      DISCORD_TOKEN: 'dt-1',
      DISCORD_APP_ID: '1',
    });
    expect(configSecrets(config, ['hf-1', undefined]).sort()).toEqual(
      ['dt-1', 'hf-1', 'p%40ss%2Fword', 'p@ss/word', 'pt-1234', 'sign-1', 'xapp-1', 'xoxb-1'].sort(),
    );
  });

  it('safeUrl hides query values and URL credentials', () => {
    expect(safeUrl('/?token=abc123')).toBe('/?token=redacted');
    expect(safeUrl('/api/jobs/web-1')).toBe('/api/jobs/web-1');
    expect(safeUrl('redis://user:pw@host:6379/0')).toBe('redis://redacted:redacted@host:6379/0');
  });
});

describe('metrics', () => {
  it('implements the queue hook and renders every series Prometheus expects', async () => {
    const metrics = createMetrics({ processMetrics: false });
    metrics.observePhase('queueWait', 1200);
    metrics.observePhase('textEncode', 30);
    metrics.observePhase('denoise', 4000);
    metrics.observePhase('decode', 250);
    metrics.observePhase('compose', 80);
    metrics.observePhase('store', 5);
    metrics.observeDeliver('discord', 300);
    metrics.stepTime(160);
    metrics.stepTime(Number.NaN);
    metrics.jobFinished('done');
    metrics.jobFinished('failed');
    metrics.retry();
    metrics.submit('accepted');
    metrics.submit('refused_queue_full');
    metrics.delivery('delivered');
    metrics.delivery('retry_later');
    metrics.setQueueCounts(async () => ({
      waiting: 3,
      delayed: 1,
      prioritized: 0,
      active: 1,
      completed: 7,
      failed: 2,
    }));
    const text = await metrics.render();
    expect(metrics.contentType).toContain('text/plain');
    expect(text).toContain('imagine_queue_depth 4');
    expect(text).toContain('imagine_queue_readable 1');
    expect(text).toContain('imagine_queue_jobs{status="active"} 1');
    expect(text).toContain('imagine_queue_jobs{status="completed"} 7');
    for (const phase of ['queue_wait', 'text_encode', 'denoise', 'decode', 'compose', 'store', 'deliver']) {
      expect(text).toContain(`imagine_job_phase_seconds_count{phase="${phase}"} 1`);
    }
    expect(text).toContain('imagine_job_phase_seconds_sum{phase="denoise"} 4');
    expect(text).toContain('imagine_deliver_seconds_count{surface="discord"} 1');
    expect(text).toContain('imagine_denoise_step_seconds_count 1');
    expect(text).toContain('imagine_jobs_finished_total{state="done"} 1');
    expect(text).toContain('imagine_jobs_finished_total{state="cancelled"} 0');
    expect(text).toContain('imagine_job_retries_total 1');
    expect(text).toContain('imagine_submissions_total{outcome="refused_queue_full"} 1');
    expect(text).toContain('imagine_deliveries_total{outcome="retry_later"} 1');
    expect(text).toContain('imagine_deliveries_total{outcome="gave_up"} 0');
  });

  it('still renders when the queue cannot be read', async () => {
    const metrics = createMetrics({ processMetrics: false });
    metrics.setQueueCounts(async () => {
      throw new Error('redis down');
    });
    const text = await metrics.render();
    expect(text).toContain('imagine_jobs_finished_total');
    expect(text).toContain('imagine_queue_readable 0');
  });
});

describe('health', () => {
  it('is ready only when every check passes and the process is not stopping', async () => {
    const health = new Health({ checkTimeoutMs: 200 });
    expect(await health.readiness()).toEqual({ ready: true, checks: {} });
    let modelLoaded = false;
    health.check('redis', async () => {});
    health.check('model', () => {
      if (!modelLoaded) throw new Error('model loading');
    });
    expect(await health.readiness()).toEqual({
      ready: false,
      checks: { redis: 'ok', model: 'model loading' },
    });
    modelLoaded = true;
    expect((await health.readiness()).ready).toBe(true);
    health.check('slow', () => new Promise((r) => setTimeout(r, 1000)));
    const slow = await health.readiness();
    expect(slow.ready).toBe(false);
    expect(slow.checks.slow).toMatch(/no answer within 200 ms/);
    health.check('slow', () => {});
    health.stopping();
    expect(await health.readiness()).toMatchObject({ ready: false, checks: { shutdown: 'shutting down' } });
  });
});

describe('ops server and Redis probe (real redis-server)', () => {
  let redis: TestRedis;
  let server: RunningServer;
  const health = new Health({ checkTimeoutMs: 1500 });
  const metrics = createMetrics();
  const probe = () => createQueueProbe(redis.url, uniquePrefix('ops'));
  let live: ReturnType<typeof createQueueProbe>;
  const dead = createQueueProbe('redis://127.0.0.1:1', 'dead');

  beforeAll(async () => {
    redis = await startTestRedis();
    live = probe();
    health.check('redis', () => live.ping());
    metrics.setQueueCounts(() => live.counts());
    server = await startOpsServer({
      host: '127.0.0.1',
      port: 0,
      health,
      metrics,
      log: createLogger({ level: 'silent' }),
    });
  });
  afterAll(async () => {
    await server?.close();
    await live?.close();
    await dead.close();
    await redis?.stop();
  });

  it('serves /healthz, /readyz and /metrics, and 404/405 for the rest', async () => {
    expect((await fetch(`${server.url}/healthz`)).status).toBe(200);
    const ready = await fetch(`${server.url}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toEqual({ status: 'ready', checks: { redis: 'ok' } });
    const text = await (await fetch(`${server.url}/metrics`)).text();
    expect(text).toContain('imagine_queue_depth 0');
    expect(text).toContain('imagine_process_resident_memory_bytes');
    expect((await fetch(`${server.url}/api/imagine`)).status).toBe(404);
    const post = await fetch(`${server.url}/metrics`, { method: 'POST' });
    expect(post.status).toBe(405);
    expect(post.headers.get('allow')).toBe('GET, HEAD');
  });

  it('reports not ready while Redis is unreachable', async () => {
    const h = new Health({ checkTimeoutMs: 1500 });
    h.check('redis', () => dead.ping());
    const started = Date.now();
    const report = await h.readiness();
    expect(report.ready).toBe(false);
    expect(report.checks.redis).not.toBe('ok');
    expect(Date.now() - started).toBeLessThan(3000);
  });
});
