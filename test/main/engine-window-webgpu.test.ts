// The engine's side of the engine window (engine/webgpu-adapter.ts, engine/backend.ts): inside Electron, a runtime
// with its own navigator.gpu (a Chromium renderer's worker) may pick webgpu without dawn.node, and its adapter is asked
// there, not by a throw-away Node child (process.execPath would be Electron's binary).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { chromiumWebgpu, webgpuUnavailable } from '../../engine/webgpu-adapter.js';

const root = fileURLToPath(new URL('../..', import.meta.url));

describe("webgpu on Chromium's navigator.gpu", () => {
  const gpu = { requestAdapter: async () => null };

  it('inside Electron with navigator.gpu (the engine window) webgpu is available; elsewhere in Electron it is not', () => {
    const electron = { electron: '45.5.0', node: '22.20.0' };
    assert.equal(chromiumWebgpu({ versions: electron, navigator: { gpu } }), true);
    assert.equal(webgpuUnavailable({ versions: electron, navigator: { gpu } }), undefined);
    // the main process and utility processes: no navigator.gpu, and dawn.node cannot run there
    for (const navigator of [undefined, {}, { gpu: null }]) {
      assert.equal(chromiumWebgpu({ versions: electron, navigator }), false);
      assert.match(
        webgpuUnavailable({ versions: electron, navigator }) ?? '',
        /dawn\.node cannot map buffers/,
      );
    }
    // plain Node keeps Dawn for Node, whatever its navigator
    assert.equal(chromiumWebgpu({ versions: { node: '20.20.2' }, navigator: { gpu } }), false);
  });

  it('an unforced pick asks navigator.gpu in place: a software adapter is skipped and reported, no child probe', () => {
    // a Node made to look like the engine window's worker: Electron's version, a navigator.gpu with SwiftShader
    const script = `
      Object.defineProperty(process.versions, 'electron', { value: '45.5.0' });
      const adapter = {
        info: { vendor: 'google', architecture: 'swiftshader', device: '', description: 'SwiftShader' },
        limits: { maxStorageBufferBindingSize: 2 ** 27, maxBufferSize: 2 ** 28 },
      };
      let asked = 0;
      const gpu = { requestAdapter: async () => (asked++, adapter) };
      Object.defineProperty(globalThis, 'navigator', { value: { gpu }, configurable: true });
      const { probeAdapter } = await import('./engine/webgpu-adapter.ts');
      const { initBackend } = await import('./engine/backend.ts');
      const r = await initBackend();
      process.stdout.write(JSON.stringify({ name: r.name, skipped: r.skipped, asked, probe: probeAdapter() }) + '\\n');
    `;
    const env: Record<string, string | undefined> = { ...process.env, NODE_OPTIONS: '' };
    delete env['DIGPT_BACKEND'];
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      cwd: root,
      env,
      encoding: 'utf8',
      timeout: 120_000,
    });
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout.trim().split('\n').at(-1) ?? '') as {
      name: string;
      skipped: { name: string; reason: string }[];
      asked: number;
      probe: { ok: boolean; reason: string };
    };
    assert.equal(
      out.skipped.find((s) => s.name === 'webgpu')?.reason,
      'webgpu: only a software adapter, google swiftshader (SwiftShader) (DIGPT_BACKEND=webgpu uses it)',
    );
    assert.equal(out.asked, 1);
    assert.notEqual(out.name, 'webgpu');
    // nothing would spawn Electron's binary as a Node to ask Dawn
    assert.deepEqual(out.probe, {
      ok: false,
      reason: "webgpu: inside Electron Chromium's navigator.gpu is asked in place",
    });
  });
});
