// `digpt bench`: the training-step bench through the CLI, and the data-pipeline bench; valid JSON, no timing claims.
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as nodePath from 'node:path';
import { describe, it } from 'node:test';
import { makeJpegFolder } from '../../app/worker/bench-pipeline.js';

const ROOT = nodePath.resolve(import.meta.dirname, '..', '..');
const digpt = (...args: string[]) =>
  spawnSync(process.execPath, [nodePath.join(ROOT, 'bin', 'digpt.js'), ...args], {
    cwd: ROOT,
    encoding: 'utf8',
    timeout: 300_000,
  });

describe('digpt bench', () => {
  it('times training steps and prints one JSON line', () => {
    const r = digpt(
      'bench',
      '--preset',
      'digpt-micro-32',
      '--batch',
      '2',
      '--steps',
      '1',
      '--warmup',
      '0',
      '--json',
    );
    assert.equal(r.status, 0, r.stderr);
    const j = JSON.parse(r.stdout.trim()) as {
      kind: string;
      img_per_s: number;
      config: { img_size: number };
    };
    assert.equal(j.kind, 'engine');
    assert.ok(j.img_per_s > 0);
    assert.equal(j.config.img_size, 32);
  });

  it('times the data pipeline over a folder of JPEGs', async () => {
    const dir = fs.mkdtempSync(nodePath.join(os.tmpdir(), 'digpt-bench-jpegs-'));
    await makeJpegFolder(dir, 60);
    const r = digpt('bench', '--pipeline', dir, '--json');
    assert.equal(r.status, 0, r.stderr);
    const j = JSON.parse(r.stdout.trim()) as Record<string, number | string>;
    assert.equal(j['kind'], 'pipeline');
    assert.equal(j['images'], 60);
    for (const k of [
      'scan_img_per_s',
      'first_load_img_per_s',
      'cached_load_img_per_s',
      'augment_img_per_s',
    ]) {
      assert.ok(typeof j[k] === 'number' && (j[k] as number) > 0, k);
    }
  });
});
