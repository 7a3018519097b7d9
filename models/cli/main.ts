/**
 * Entry point of the `imagine` CLI (`npm exec -- imagine …`, `npm run imagine -- …`).
 * The only file of the CLI that reads process.env or sets the exit code.
 */
import { runCli } from './run.ts';

const code = await runCli(
  process.argv.slice(2),
  {
    MODELS_DIR: process.env.MODELS_DIR,
    HF_TOKEN: process.env.HF_TOKEN,
    HF_ENDPOINT: process.env.HF_ENDPOINT,
  },
  { stdout: process.stdout, stderr: process.stderr },
);
process.exitCode = code;
