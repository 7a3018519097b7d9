/**
 * A no-op generation worker in its own process, for `bench:chat` (in production workers are
 * separate processes, one per GPU). argv[2]: `{"url": "redis://…", "prefix": "…"}`. Prints `ready`.
 */
import { createNoopEngine, runWorkerProcess, silentLogger } from '../../queue/index.ts';

const config = JSON.parse(process.argv[2] ?? '{}') as { url: string; prefix: string };
const proc = await runWorkerProcess({
  connection: config.url,
  prefix: config.prefix,
  engine: async () => createNoopEngine(),
  logger: silentLogger,
});
process.stdout.write('ready\n');
await proc.stopped;
process.exit(0);
