import { spawn, spawnSync } from 'node:child_process';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';

/**
 * `npm ci` on a machine that reaches only the npm registry: onnxruntime-node's install script would
 * fetch CUDA binaries from another host and fail the whole install. npm runs that script again on
 * `npm rebuild`, with the project's config and package.json policy, exactly as during `npm ci`.
 */
describe('npm ci stays offline', () => {
  it("runs onnxruntime-node's install step without downloading anything", () => {
    const env = { ...process.env };
    for (const key of Object.keys(env)) {
      if (/^(ONNXRUNTIME_NODE_INSTALL|npm_config_onnxruntime)/iu.test(key)) delete env[key];
    }
    const result = spawnSync('npm', ['rebuild', 'onnxruntime-node', '--foreground-scripts'], {
      env,
      encoding: 'utf8',
      timeout: 120_000,
    });
    const output = `${result.stdout}\n${result.stderr}`;
    expect(output).not.toMatch(/nuget|ENOTFOUND|Downloading/iu);
    expect(result.status, output).toBe(0);
  }, 130_000);
});

describe('npm run install:cuda', () => {
  it("asks the CUDA provider's feed for it (seen by a local proxy) and fails when it can't be fetched", async () => {
    const connects: string[] = [];
    const proxy = createServer((_req, res) => res.end());
    proxy.on('connect', (req, socket) => {
      connects.push(String(req.url));
      socket.destroy();
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    const { port } = proxy.address() as AddressInfo;
    try {
      const result = await new Promise<{ status: number | null; output: string }>((resolve) => {
        let output = '';
        const child = spawn('npm', ['run', 'install:cuda'], {
          // onnxruntime-node's installer routes its downloads through global-agent's proxy setting.
          env: { ...process.env, GLOBAL_AGENT_HTTP_PROXY: `http://127.0.0.1:${port}` },
        });
        child.stdout.on('data', (chunk) => (output += chunk));
        child.stderr.on('data', (chunk) => (output += chunk));
        child.on('close', (status) => resolve({ status, output }));
      });
      expect(
        connects.some((target) => target.startsWith('api.nuget.org:')),
        result.output,
      ).toBe(true);
      expect(result.status, result.output).not.toBe(0);
    } finally {
      await new Promise((resolve) => proxy.close(resolve));
    }
  }, 60_000);
});
