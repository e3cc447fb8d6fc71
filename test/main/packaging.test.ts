// electron.config.ts: what `npm run dist` packs, what it leaves outside the asar archive, and the fuses it flips.
// `npm run check:package` packs it for real (electron-builder --dir) and checks the asar it writes.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { minimatch } from 'minimatch';
import config from '../../electron.config.js';

const files = config.files as string[];

/** electron-builder's reading of `files`: in when a pattern takes it and no later `!pattern` drops it. */
function packed(path: string): boolean {
  let inside = false;
  for (const pattern of files) {
    if (pattern.startsWith('!')) {
      if (minimatch(path, pattern.slice(1), { dot: true })) inside = false;
    } else if (minimatch(path, pattern, { dot: true })) inside = true;
  }
  return inside;
}

describe('electron-builder config', () => {
  it('packs the bundles, the built page, the built-in sample and teacher, and package.json', () => {
    for (const path of [
      'package.json',
      'dist/main/index.js',
      'dist/main/preload.cjs',
      'dist/main/worker.js',
      'dist/main/replica.js',
      'dist/main/job-process.js',
      'dist/main/engine.cjs',
      'dist/main/engine-worker.js',
      'dist/main/engine-preload.cjs',
      'dist/renderer/index.html',
      'dist/renderer/assets/index-abc.js',
      'app/datasets/sample/fashion-mnist-sample/train/0/00000.png',
      'app/teachers/fashion-vit-micro.safetensors',
      'scaleout/digpt_torch/train.py',
      'scaleout/launch-templates/slurm.sbatch',
    ]) {
      assert.ok(packed(path), path);
    }
  });

  it('leaves out the TypeScript sources, source maps, tsx and esbuild: the app runs bundles only', () => {
    for (const path of [
      'main/index.ts',
      'app/worker/entry.ts',
      'app/worker/boot.mjs',
      'app/datasets/index.ts',
      'app/teachers/index.ts',
      'engine/backend.ts',
      'engine/parallel/replica-boot.mjs',
      'dist/main/index.js.map',
      'node_modules/tsx/package.json',
      'node_modules/esbuild/lib/main.js',
      'node_modules/@esbuild/linux-x64/bin/esbuild',
      'scaleout/tests/test_train.py',
      'scaleout/digpt_torch/__pycache__/train.cpython-311.pyc',
    ]) {
      assert.equal(packed(path), false, path);
    }
  });

  it("unpacks sharp's native files and WebAssembly from the asar, and no longer esbuild's binary", () => {
    const unpack = config.asarUnpack as string[];
    for (const pattern of ['**/node_modules/sharp/**', '**/node_modules/@img/**', '**/*.wasm', '**/*.node']) {
      assert.ok(unpack.includes(pattern), pattern);
    }
    assert.ok(!unpack.some((p) => p.includes('esbuild')));
  });

  it("flips the fuses of Electron's security checklist", () => {
    assert.deepEqual(config.electronFuses, {
      runAsNode: false,
      enableNodeOptionsEnvironmentVariable: false,
      enableNodeCliInspectArguments: false,
      onlyLoadAppFromAsar: true,
      enableEmbeddedAsarIntegrityValidation: true,
      grantFileProtocolExtraPrivileges: false,
    });
  });
});
