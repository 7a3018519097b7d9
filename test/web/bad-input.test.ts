import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IMAGINE_BODY_LIMIT_BYTES } from '../../bots/web/image-body.ts';
import { call, newUser, raw, startTestApp, type TestApp, waitForJob } from './app-helper.ts';

function errorOf(body: string): { code: string; message: string } {
  const parsed = JSON.parse(body) as { error: { code: string; message: string } };
  expect(typeof parsed.error.code).toBe('string');
  expect(parsed.error.message.length).toBeGreaterThan(5);
  return parsed.error;
}

describe('bad input on every route gets a clear 4xx, never a 500', () => {
  let t: TestApp;
  let doneId: string;
  let queuedId: string;
  let owner: { cookie: string };
  /** Someone with no jobs of their own, for requests that are refused anyway. */
  let someone: { cookie: string };
  const user = () => someone;

  beforeAll(async () => {
    t = await startTestApp();
    owner = await newUser(t.url);
    someone = await newUser(t.url);
    const made = await call<{ id: string }>(`${t.url}/api/imagine`, {
      method: 'POST',
      headers: owner,
      json: { text: 'a finished grid --steps 2' },
    });
    doneId = made.body.id;
    await waitForJob(t.url, doneId, ['done']);
    // A long job keeps the worker busy so the next one stays queued.
    await call(`${t.url}/api/imagine`, {
      method: 'POST',
      headers: await newUser(t.url),
      json: { text: 'busy --steps 50' },
    });
    const queued = await call<{ id: string }>(`${t.url}/api/imagine`, {
      method: 'POST',
      headers: await newUser(t.url),
      json: { text: 'still queued --steps 2' },
    });
    queuedId = queued.body.id;
  });
  afterAll(async () => {
    await t?.stop();
  });

  const json = { 'content-type': 'application/json' };

  it('POST /api/imagine: malformed JSON, wrong shapes, unknown flags and fields', async () => {
    const cases: [string | undefined, number, RegExp][] = [
      ['{"text": "a cat"', 400, /not valid JSON/],
      ['[1,2,3]', 400, /JSON object/],
      ['"a cat"', 400, /JSON object/],
      ['null', 400, /JSON object/],
      ['{"text": 42}', 400, /"text" must be a string/],
      ['{"text": "a cat --foo 3"}', 400, /Unknown option `--foo`/],
      ['{"text": "a cat --seed"}', 400, /needs a value/],
      ['{"text": "a cat --seed -5"}', 400, /needs a value|seed/i],
      ['{"text": "a cat --steps 9999"}', 400, /Steps must be/],
      ['{"text": "a cat --ar 9:1"}', 400, /Aspect ratio/],
      ['{"text": "   "}', 400, /prompt is empty/],
      ['{"text": "/imagine"}', 400, /prompt is empty/],
      ['{"text": "a cat", "seed": 3}', 400, /either/],
      ['{"prompt": "a cat", "colour": "red"}', 400, /Unknown field "colour"/],
      [
        '{"prompt": "a cat", "seed": {"n": 1}}',
        400,
        /"seed" must be a whole number from 0 to 4294967295.*got an object/,
      ],
      ['{"prompt": "x", "negative": 5}', 400, /"negative" must be a string.*got a number/],
      ['{"prompt": 5}', 400, /"prompt" must be a string/],
      ['{"prompt": ["a", "cat"]}', 400, /"prompt" must be a string.*got a list/],
      ['{"prompt": "x", "sampler": 3}', 400, /"sampler" must be one of "pndm"/],
      ['{"prompt": "x", "aspect": 1.5}', 400, /"aspect" must be an aspect ratio "W:H"/],
      ['{"prompt": "x", "size": 512}', 400, /"size" must be a size "WxH"/],
      ['{"prompt": "x", "steps": true}', 400, /"steps" must be a whole number.*got true/],
      ['{"prompt": "x", "guidance": [7]}', 400, /"guidance" must be a number from 0 to 30/],
      ['{"prompt": "x", "width": {}, "height": "512"}', 400, /"width" must be a whole number of pixels/],
      ['{"prompt": "x", "negative": false, "seed": []}', 400, /"negative" must be.*"seed" must be/],
      ['{"prompt": "x", "aspect": "9:1"}', 400, /Aspect ratio/],
      ['{"prompt": "x", "size": "500x512"}', 400, /multiple of 8/],
      ['{"prompt": "x", "aspect": "3:2", "size": "512x512"}', 400, /either an aspect ratio or a size/],
      ['{"prompt": "a cat", "width": 500, "height": 512}', 400, /multiple of 8/],
      ['{"prompt": "a cat", "width": 512}', 400, /both width and height/],
      ['{"prompt": "a cat", "sampler": "nope"}', 400, /Unknown sampler/],
      ['{"negative": "x"}', 400, /"prompt"/],
      [undefined, 400, /"prompt"/],
    ];
    for (const [body, status, message] of cases) {
      const res = await raw(t.url, 'POST', '/api/imagine', body, { ...json, ...user() });
      expect(res.status, body).toBe(status);
      expect(errorOf(res.body).message, body).toMatch(message);
    }
  });

  it('refuses huge bodies with 413, declared or streamed', async () => {
    const huge = Buffer.alloc(1024 * 1024, 'a');
    // /api/imagine has room for an image prompt (20 MiB, base64-encoded), and no more.
    const hugeImagine = Buffer.alloc(IMAGINE_BODY_LIMIT_BYTES + 1, 'a');
    const streamed = await raw(t.url, 'POST', '/api/imagine', hugeImagine, json);
    expect(streamed.status).toBe(413);
    expect(errorOf(streamed.body).code).toBe('E_BODY_TOO_LARGE');
    const chunked = await raw(t.url, 'POST', '/api/imagine', hugeImagine, {
      ...json,
      'transfer-encoding': 'chunked',
    });
    expect(chunked.status).toBe(413);
    for (const path of [`/api/jobs/${doneId}/refine/1`, `/api/jobs/${doneId}/cancel`]) {
      expect((await raw(t.url, 'POST', path, huge, json)).status, path).toBe(413);
    }
  });

  it('refuses bodies that are not JSON (415)', async () => {
    const res = await raw(t.url, 'POST', '/api/imagine', 'text=a+cat', {
      'content-type': 'application/x-www-form-urlencoded',
    });
    expect(res.status).toBe(415);
  });

  it('unknown ids are 404, wherever they appear', async () => {
    const unknown = 'web-does-not-exist';
    for (const [method, path] of [
      ['GET', `/api/jobs/${unknown}`],
      ['GET', `/api/jobs/${unknown}/grid.png`],
      ['GET', `/api/jobs/${unknown}/images/1.png`],
      ['GET', `/api/jobs/${unknown}/preview.png`],
      ['POST', `/api/jobs/${unknown}/refine/1`],
      ['POST', `/api/jobs/${unknown}/reroll`],
      ['POST', `/api/jobs/${unknown}/upscale/2`],
      ['POST', `/api/jobs/${unknown}/cancel`],
      ['GET', '/api/jobs/not%20an%20id'],
      ['GET', '/api/jobs/..%2F..%2Fetc%2Fpasswd'],
      ['GET', '/api/jobs/%E0%A4%A'],
      ['GET', '/api/nothing-here'],
      ['GET', '/static/../../package.json'],
      ['POST', `/api/jobs/${doneId}/refine/abc`],
    ] as const) {
      const res = await raw(t.url, method, path, undefined, user());
      expect(res.status, `${method} ${path}`).toBe(404);
      errorOf(res.body);
    }
  });

  it('wrong methods are 405 with Allow', async () => {
    for (const [method, path, allow] of [
      ['GET', '/api/imagine', 'POST'],
      ['PUT', '/api/imagine', 'POST'],
      ['POST', `/api/jobs/${doneId}`, 'GET, HEAD'],
      ['DELETE', `/api/jobs/${doneId}`, 'GET, HEAD'],
      ['GET', `/api/jobs/${doneId}/refine/1`, 'POST'],
      ['GET', `/api/jobs/${doneId}/cancel`, 'POST'],
      ['POST', `/api/jobs/${doneId}/grid.png`, 'GET, HEAD'],
      ['POST', '/api/events', 'GET, HEAD'],
      ['POST', '/', 'GET, HEAD'],
      ['POST', '/healthz', 'GET, HEAD'],
      ['POST', '/metrics', 'GET, HEAD'],
    ] as const) {
      const res = await raw(t.url, method, path, undefined, user());
      expect(res.status, `${method} ${path}`).toBe(405);
      expect(res.headers.allow, `${method} ${path}`).toBe(allow);
    }
  });

  it('bad image numbers, bodies on buttons, results that do not exist yet', async () => {
    for (const path of [
      `/api/jobs/${doneId}/refine/0`,
      `/api/jobs/${doneId}/refine/5`,
      `/api/jobs/${doneId}/upscale/9`,
    ]) {
      const res = await raw(t.url, 'POST', path, undefined, user());
      expect(res.status, path).toBe(400);
      expect(errorOf(res.body).message).toMatch(/1 to 4/);
    }
    const images = await raw(t.url, 'GET', `/api/jobs/${doneId}/images/7.png`);
    expect(images.status).toBe(400);
    const withBody = await raw(t.url, 'POST', `/api/jobs/${doneId}/reroll`, '{"seed": 1}', json);
    expect(withBody.status).toBe(400);
    expect(errorOf(withBody.body).message).toMatch(/no body fields/);
    const badJson = await raw(t.url, 'POST', `/api/jobs/${doneId}/reroll`, '{oops', json);
    expect(badJson.status).toBe(400);
    const notDone = await raw(t.url, 'GET', `/api/jobs/${queuedId}/grid.png`);
    expect(notDone.status).toBe(409);
    const refineQueued = await raw(t.url, 'POST', `/api/jobs/${queuedId}/refine/1`, undefined, user());
    expect(refineQueued.status).toBe(400);
    expect(errorOf(refineQueued.body).message).toMatch(/not finished/);
    const key = await raw(t.url, 'POST', '/api/imagine', '{"text":"a cat"}', {
      ...json,
      'idempotency-key': 'no spaces!',
    });
    expect(key.status).toBe(400);
  });

  it('cancelling a finished job is refused', async () => {
    const res = await raw(t.url, 'POST', `/api/jobs/${doneId}/cancel`, undefined, owner);
    expect(res.status).toBeGreaterThanOrEqual(400);
    expect(res.status).toBeLessThan(500);
    expect(errorOf(res.body).message).toMatch(/already finished/);
  });

  it('typed bodies with random JSON values in every field never produce a 5xx; wrong types name the field', async () => {
    const client = await newUser(t.url);
    const anything = fc.jsonValue({ maxDepth: 2 });
    // Mostly values of the right type (so the parser's checks and real submissions run too), sometimes anything.
    const field = (...plausible: fc.Arbitrary<unknown>[]) =>
      fc.oneof({ arbitrary: anything, weight: 1 }, { arbitrary: fc.oneof(...plausible), weight: 6 });
    const STRING_FIELDS = new Set(['prompt', 'negative', 'sampler', 'aspect', 'size']);
    /** The first field whose JSON type is wrong (null means "not given", except for prompt). */
    const wrongType = (body: Record<string, unknown>): string | undefined =>
      Object.entries(body).find(([key, value]) => {
        if (key === 'prompt') return typeof value !== 'string';
        if (value === null) return false;
        return STRING_FIELDS.has(key)
          ? typeof value !== 'string'
          : !['string', 'number'].includes(typeof value);
      })?.[0];
    await fc.assert(
      fc.asyncProperty(
        fc
          .tuple(
            fc.record(
              {
                prompt: field(fc.string({ maxLength: 40 }), fc.constant('a red fox')),
                negative: field(fc.string({ maxLength: 20 })),
                seed: field(fc.nat(), fc.nat().map(String), fc.double()),
                steps: field(
                  fc.integer({ min: 1, max: 4 }),
                  fc.integer({ min: -5, max: 80 }),
                  fc.constantFrom('3', '2.5', 'x'),
                ),
                guidance: field(fc.double({ min: -1, max: 40 }), fc.constantFrom('7.5', '.5', '1e1')),
                sampler: field(fc.constantFrom('euler', 'ddim', 'Euler A', 'nope')),
              },
              { requiredKeys: ['prompt'] },
            ),
            // The size comes one way at a time (mostly), so bodies get past the "either … or" rules too.
            fc.oneof(
              fc.constant({}),
              fc.record({ aspect: field(fc.constantFrom('3:2', '16:9', '1:5', '0:0', 'x')) }),
              fc.record({ size: field(fc.constantFrom('64x64', '128x64', '7x7', '99999x99999', '')) }),
              fc.record({
                width: field(fc.constantFrom(64, 128, 500, 1e9, '128')),
                height: field(fc.constantFrom(64, 128, -8, '64')),
              }),
              fc.record(
                { width: anything, height: anything, aspect: anything, size: anything },
                { requiredKeys: [] },
              ),
            ),
          )
          .map(([fields, size]) => ({ ...fields, ...size })),
        async (body) => {
          const text = JSON.stringify(body);
          const res = await raw(t.url, 'POST', '/api/imagine', text, { ...json, ...client });
          expect(res.status, text).toBeLessThan(500);
          if (res.status === 202) {
            const id = (JSON.parse(res.body) as { id: string }).id;
            await raw(t.url, 'POST', `/api/jobs/${id}/cancel`, undefined, client);
            return;
          }
          const error = errorOf(res.body);
          const wrong = wrongType(JSON.parse(text) as Record<string, unknown>);
          if (wrong !== undefined) {
            expect(res.status, text).toBe(400);
            expect(error.message, text).toContain(`"${wrong}"`);
          }
        },
      ),
      { numRuns: 150 },
    );
  });

  it('random bodies and paths never produce a 5xx', async () => {
    const client = await newUser(t.url);
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.string({ maxLength: 200 }),
          fc.json({ maxDepth: 3 }),
          fc.record({ text: fc.string({ maxLength: 120 }) }).map((v) => JSON.stringify(v)),
          fc
            .record(
              {
                prompt: fc.string({ maxLength: 40 }),
                seed: fc.oneof(fc.integer(), fc.string()),
                steps: fc.integer(),
              },
              { requiredKeys: [] },
            )
            .map((v) => JSON.stringify(v)),
        ),
        fc.constantFrom(
          '/api/imagine',
          `/api/jobs/${doneId}/reroll`,
          `/api/jobs/${queuedId}/cancel`,
          '/api/x',
        ),
        async (body, path) => {
          const res = await raw(t.url, 'POST', path, body, { ...json, ...client });
          expect(res.status, `${path} ${body}`).toBeLessThan(500);
          // Cancel anything that got queued so the per-user cap never hides other answers.
          if (res.status === 202) {
            const id = (JSON.parse(res.body) as { id: string }).id;
            await raw(t.url, 'POST', `/api/jobs/${id}/cancel`, undefined, client);
          }
        },
      ),
      { numRuns: 60 },
    );
  });
});
