/**
 * The fake Discord in its own process, for `bench:chat`: Discord is remote in production, so the
 * bot's event loop must not pay for the fake's work. Controlled over IPC (see `FakeCommand`).
 * Run by fork(…, { execArgv: ['--import', 'tsx'] }).
 */
import { FakeDiscord } from '../../test/fakes/discord/server.ts';

export type FakeCommand =
  | { readonly type: 'burst'; readonly n: number; readonly steps: number; readonly tag: string }
  | { readonly type: 'posted'; readonly jobIds: readonly string[] }
  | { readonly type: 'stop' };

export type FakeReply =
  | { readonly type: 'ready'; readonly apiUrl: string; readonly appId: string; readonly token: string }
  | { readonly type: 'burst'; readonly entries: readonly { jobId: string; ackMs: number }[] }
  | { readonly type: 'posted'; readonly at: Readonly<Record<string, number>> };

const send = (reply: FakeReply): void => {
  process.send?.(reply);
};

const fake = await FakeDiscord.start({ token: 'bench-token', lightweight: true });
/** When each grid arrived (Date.now), by job id, read from the uploaded file name. */
const gridAt = new Map<string, number>();
let scanned = 0;

function scan(): void {
  for (; scanned < fake.requests.length; scanned++) {
    const r = fake.requests[scanned]!;
    for (const f of r.files) {
      const match = /^(.+)-grid\.(png|webp|jpg)$/u.exec(f.name);
      if (match !== null && !gridAt.has(match[1]!)) gridAt.set(match[1]!, r.receivedAtMs);
    }
  }
}

process.on('message', (message: FakeCommand) => {
  void (async () => {
    switch (message.type) {
      case 'burst': {
        const sent = Array.from({ length: message.n }, (_, i) =>
          fake.slashCommand({
            options: { prompt: `a lighthouse at dusk, ${message.tag} ${i}`, steps: message.steps },
            user: { id: String(300_000_000_000_000_000n + BigInt(i)), username: `user${i}` },
          }),
        );
        await fake.waitFor(() => sent.every((s) => fake.callbacks.has(s.id)) || undefined, 120_000, 'acks');
        send({
          type: 'burst',
          entries: sent.map((s) => ({
            jobId: `discord-${s.id}`,
            ackMs: fake.callbacks.get(s.id)!.receivedAt - s.sentAt,
          })),
        });
        break;
      }
      case 'posted': {
        scan();
        const at: Record<string, number> = {};
        for (const id of message.jobIds) {
          const t = gridAt.get(id);
          if (t !== undefined) at[id] = t;
        }
        send({ type: 'posted', at });
        break;
      }
      case 'stop':
        await fake.close();
        process.exit(0);
    }
  })();
});

send({ type: 'ready', apiUrl: fake.apiUrl, appId: fake.appId, token: fake.token });
