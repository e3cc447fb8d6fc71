// electron.config.ts: what `npm run dist` packs, and what it leaves outside the asar archive.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import config from '../../electron.config.js';

describe('electron-builder config', () => {
  it('packs the bundles, the built page and the workbench sources', () => {
    for (const pattern of ['package.json', 'dist/main/**', 'dist/renderer/**', 'app/**', 'engine/**']) {
      assert.ok(config.files && (config.files as string[]).includes(pattern), pattern);
    }
  });

  it("unpacks sharp's native files, esbuild's binary and WebAssembly from the asar", () => {
    const unpack = config.asarUnpack as string[];
    for (const pattern of [
      '**/node_modules/sharp/**',
      '**/node_modules/@img/**',
      '**/node_modules/@esbuild/**',
      '**/*.wasm',
      '**/*.node',
    ]) {
      assert.ok(unpack.includes(pattern), pattern);
    }
  });
});
