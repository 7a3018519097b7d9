/**
 * `npm run install:cuda`: fetches onnxruntime-node's CUDA 12 provider libraries on a GPU host.
 *
 * The project skips onnxruntime-node's install script so that `npm ci` stays offline; this runs it on
 * purpose. Two quirks of onnxruntime-node 1.30's installer are handled here: under npm, the project's
 * `onnxruntime-node-install=skip` reaches it as npm_config_…, which only ONNXRUNTIME_NODE_INSTALL
 * overrides, and the value `cuda12` parses to "unset" (then, under npm, it exits without installing),
 * so `1` (install this platform's extras: CUDA 12 on linux/x64) is used. It also exits 0 when a
 * download breaks off, so success is judged by the provider library being there afterwards.
 */
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import path from 'node:path';
import { providerProblem } from '../providers.ts';

if (process.platform !== 'linux' || process.arch !== 'x64') {
  console.error(
    `install:cuda: onnxruntime-node ships a CUDA provider for linux/x64 only, not ${process.platform}/${process.arch}.`,
  );
  process.exit(1);
}
const require = createRequire(import.meta.url);
const installer = path.join(
  path.dirname(require.resolve('onnxruntime-node/package.json')),
  'script',
  'install.js',
);
const run = spawnSync(process.execPath, [installer], {
  stdio: 'inherit',
  env: { ...process.env, ONNXRUNTIME_NODE_INSTALL: '1' },
});
const problem = providerProblem('cuda');
if (run.status !== 0 || problem !== null) {
  console.error(
    `install:cuda: the CUDA provider was not installed (${problem ?? `installer exit ${run.status}`}). ` +
      'It is downloaded from the NuGet feed; check this host can reach it (proxies: GLOBAL_AGENT_HTTPS_PROXY).',
  );
  process.exit(1);
}
console.error('install:cuda: CUDA 12 provider installed; start workers with ORT_EP=cuda.');
