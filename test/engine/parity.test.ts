// The proof: every reference vector passes on wasm and on cpu, and `npm run parity` fails loudly on a bad vector.
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as nodePath from 'node:path';
import { describe, it } from 'node:test';
import { initBackend } from '../../engine/backend.js';
import { SafetensorsFile, writeSafetensors, type TensorToWrite } from '../../engine/io/safetensors.js';
import { formatCheck, runParityFile } from '../../engine/parity/run.js';
import { PARITY_DIR } from './helpers.js';

const files = fs
  .readdirSync(PARITY_DIR)
  .filter((f) => f.endsWith('.safetensors'))
  .sort();
const ROOT = nodePath.resolve(import.meta.dirname, '..', '..');

describe('parity vectors', () => {
  it('are present', async () => {
    assert.ok(files.length >= 6, `found ${files.length} vector files in ${PARITY_DIR}`);
  });
  for (const backend of ['wasm', 'cpu'] as const) {
    it(`all pass on ${backend}`, async () => {
      await initBackend(backend);
      for (const f of files) {
        const checks = await runParityFile(nodePath.join(PARITY_DIR, f));
        const failed = checks.filter((c) => !c.pass).map(formatCheck);
        assert.deepEqual(failed, [], `${f} on ${backend}`);
        // a digpt vector checks forward, both losses, every gradient and every AdamW update
        if (f.startsWith('digpt')) assert.ok(checks.length > 100, `${f}: only ${checks.length} checks`);
      }
    });
  }
});

describe('npm run parity', () => {
  it('prints a line per check and exits non-zero when a vector disagrees', async () => {
    const dir = fs.mkdtempSync(nodePath.join(os.tmpdir(), 'digpt-parity-'));
    const src = SafetensorsFile.open(nodePath.join(PARITY_DIR, 'vit-gap-tiny.safetensors'));
    const out = new Map<string, TensorToWrite>();
    for (const k of src.keys()) {
      const data = src.readFloat32(k);
      if (k === 'output.logits') data[0] = (data[0] as number) + 1;
      out.set(k, { dtype: 'F32', shape: src.entry(k).shape, data });
    }
    writeSafetensors(nodePath.join(dir, 'broken.safetensors'), out, src.metadata);
    src.close();
    fs.copyFileSync(
      nodePath.join(PARITY_DIR, 'vit-cls-tiny.safetensors'),
      nodePath.join(dir, 'good.safetensors'),
    );
    const r = spawnSync(process.execPath, ['--import', 'tsx', 'engine/parity/cli.ts', dir], {
      cwd: ROOT,
      encoding: 'utf8',
    });
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stdout, /^FAIL {2}broken\.safetensors {2}logits {2}max_err=1\.\d+e\+0 {2}tol=/m);
    assert.match(r.stdout, /^PASS {2}good\.safetensors {2}logits/m);
    assert.match(r.stdout, /^backend: wasm/m);
  });
});
