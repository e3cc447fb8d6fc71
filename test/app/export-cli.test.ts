// `digpt export` (the real command): it has no roots, yet never writes over a run's own files or the built-in
// sample and teacher, and refuses an existing --out file.
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as nodePath from 'node:path';
import { after, before, describe, it } from 'node:test';
import { BUILTIN_SAMPLE_DIR } from '../../app/datasets/index.js';
import { BUILTIN_TEACHER } from '../../app/teachers/index.js';
import { initBackend } from '../../engine/backend.js';
import { oneStepRun } from './paths-helpers.js';

const BIN = nodePath.resolve(import.meta.dirname, '..', '..', 'bin', 'digpt.js');
const tmp = fs.mkdtempSync(nodePath.join(os.tmpdir(), 'digpt-export-cli-'));
const runA = nodePath.join(tmp, 'a');
const runB = nodePath.join(tmp, 'b');

function digpt(...args: string[]) {
  return spawnSync(process.execPath, [BIN, ...args], {
    cwd: tmp,
    encoding: 'utf8',
    env: {
      ...process.env,
      DIGPT_CACHE: nodePath.join(tmp, 'cache'),
      DIGPT_WORKSPACE: nodePath.join(tmp, 'ws'),
    },
  });
}

before(async () => {
  await initBackend();
  await oneStepRun(runA);
  await oneStepRun(runB);
});
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('digpt export', () => {
  it("refuses another run's config.json and metrics.jsonl, and the built-in sample and teacher", () => {
    const config = fs.readFileSync(nodePath.join(runB, 'config.json'));
    const metrics = fs.readFileSync(nodePath.join(runB, 'metrics.jsonl'));
    const teacher = fs.readFileSync(BUILTIN_TEACHER);
    for (const [out, why] of [
      [nodePath.join(runB, 'config.json'), /is inside the run folder/],
      [nodePath.join('b', 'metrics.jsonl'), /is inside the run folder/],
      [nodePath.join(BUILTIN_SAMPLE_DIR, 'x.safetensors'), /install folder/],
      [BUILTIN_TEACHER, /install folder/],
    ] as const) {
      const r = digpt('export', runA, '--format', 'timm', '--out', out);
      assert.equal(r.status, 1, r.stderr);
      assert.match(r.stderr, /^digpt: export path /m);
      assert.match(r.stderr, why);
    }
    assert.ok(fs.readFileSync(nodePath.join(runB, 'config.json')).equals(config));
    assert.ok(fs.readFileSync(nodePath.join(runB, 'metrics.jsonl')).equals(metrics));
    assert.ok(fs.readFileSync(BUILTIN_TEACHER).equals(teacher));
    assert.ok(!fs.existsSync(nodePath.join(BUILTIN_SAMPLE_DIR, 'x.safetensors')));
  });

  it('refuses an existing --out file unless --overwrite, and re-exports to the default path', () => {
    const out = nodePath.join(tmp, 'model.safetensors');
    fs.writeFileSync(out, 'a file of mine');
    const r = digpt('export', runA, '--format', 'timm', '--out', out);
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, /model\.safetensors already exists; export with overwrite/);
    assert.equal(fs.readFileSync(out, 'utf8'), 'a file of mine');
    const forced = digpt('export', runA, '--format', 'timm', '--out', out, '--overwrite');
    assert.equal(forced.status, 0, forced.stderr);
    assert.notEqual(fs.readFileSync(out, 'utf8'), 'a file of mine');
    assert.match(forced.stdout, /^wrote .*model\.safetensors \(\d+ tensors, step 1\)/);
    for (let i = 0; i < 2; i++) {
      const d = digpt('export', runA, '--format', 'digpt', '--json');
      assert.equal(d.status, 0, d.stderr);
      assert.equal(
        (JSON.parse(d.stdout) as { path: string }).path,
        nodePath.join(fs.realpathSync(runA), 'export', 'digpt.safetensors'),
      );
    }
  });
});
