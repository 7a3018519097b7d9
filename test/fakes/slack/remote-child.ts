import type { RemoteReply, RemoteRequest } from './remote.ts';
import { fireConcurrentCommands, SignedSender } from './sender.ts';
import { FakeSlack } from './server.ts';

/**
 * Child-process side of `startRemoteFakeSlack()`: hosts the fake Slack and the load generator so
 * their CPU does not share the measured bot's event loop. Speaks a small request/reply protocol
 * over the IPC channel.
 */

const send = (message: RemoteReply | { ready: true; apiUrl: string }) => process.send?.(message);

const fake = await new FakeSlack().start();
let sender: SignedSender | undefined;

async function handle(request: RemoteRequest): Promise<unknown> {
  switch (request.op) {
    case 'fire': {
      sender?.close();
      sender = new SignedSender({
        url: request.url,
        fake,
        ...(request.signingSecret === undefined ? {} : { signingSecret: request.signingSecret }),
      });
      const prefix = request.userPrefix ?? 'U0LOAD';
      const run = await fireConcurrentCommands({
        sender,
        count: request.count,
        build: (i) => ({
          text: request.text ?? `load prompt ${i} --steps 2`,
          user: `${prefix}${String(i).padStart(5, '0')}`,
        }),
      });
      return {
        entries: run.results.map((r, i) => ({
          triggerId: run.triggerIds[i] ?? '',
          ackMs: r.ackMs,
          status: r.status,
        })),
        ackMs: run.ackMs,
        p50: run.p50,
        p99: run.p99,
        max: run.max,
        failures: run.failures,
        wallMs: run.wallMs,
      };
    }
    case 'fileSharedAt': {
      const out: Record<string, number> = {};
      for (const prefix of request.prefixes) {
        const message = fake.messages.find((m) => m.files.some((f) => f.filename.startsWith(prefix)));
        if (message !== undefined) out[prefix] = message.postedAt;
      }
      return out;
    }
    case 'counts':
      return {
        calls: fake.calls.length,
        okCalls: Object.fromEntries(
          [...new Set(fake.calls.map((c) => c.method))].map((m) => [m, fake.okCallsTo(m).length]),
        ),
        messages: fake.messages.length,
        ephemerals: fake.ephemerals.length,
      };
    case 'fail':
      fake.fail(request.method, ...request.faults);
      return null;
    case 'stop':
      sender?.close();
      await fake.stop();
      return null;
  }
}

process.on('message', (request: RemoteRequest) => {
  handle(request).then(
    (result) => {
      send({ id: request.id, ok: true, result });
      if (request.op === 'stop') process.disconnect();
    },
    (error: unknown) => send({ id: request.id, ok: false, error: String(error) }),
  );
});

send({ ready: true, apiUrl: fake.apiUrl });
