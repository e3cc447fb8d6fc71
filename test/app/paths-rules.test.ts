// The path rules of app/runs/paths.ts on real folders and links: real paths of paths still to be made, the read check,
// what counts as a run folder, and the export target rule's edges.
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as nodePath from 'node:path';
import { after, describe, it } from 'node:test';
import {
  checkExportTarget,
  checkReadPath,
  isRunFolder,
  realPathOf,
  realPathOfName,
} from '../../app/runs/paths.js';

const tmp = fs.realpathSync(fs.mkdtempSync(nodePath.join(os.tmpdir(), 'digpt-paths-')));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

function mkdir(...parts: string[]): string {
  const p = nodePath.join(tmp, ...parts);
  fs.mkdirSync(p, { recursive: true });
  return p;
}

describe('real paths', () => {
  it('resolve the nearest existing ancestor of a path that does not exist yet', () => {
    const real = mkdir('real', 'inner');
    fs.symlinkSync(real, nodePath.join(tmp, 'via'));
    assert.equal(
      realPathOf(nodePath.join(tmp, 'via', 'not', 'yet.bin')),
      nodePath.join(real, 'not', 'yet.bin'),
    );
    assert.equal(realPathOf(nodePath.join(tmp, 'via')), real);
    // a name a write replaces keeps its own name, even when it is a link
    const other = nodePath.join(mkdir('other'), 'file');
    fs.writeFileSync(other, 'x');
    fs.symlinkSync(other, nodePath.join(real, 'planted'));
    assert.equal(realPathOfName(nodePath.join(tmp, 'via', 'planted')), nodePath.join(real, 'planted'));
    assert.equal(realPathOf(nodePath.join(tmp, 'via', 'planted')), other);
  });
});

describe('checkReadPath', () => {
  const root = mkdir('data');
  const elsewhere = mkdir('elsewhere');
  fs.writeFileSync(nodePath.join(elsewhere, 'secret.safetensors'), 'x');
  fs.writeFileSync(nodePath.join(root, 'teacher.safetensors'), 'x');
  fs.symlinkSync(nodePath.join(elsewhere, 'secret.safetensors'), nodePath.join(root, 'out.safetensors'));
  fs.symlinkSync(nodePath.join(root, 'teacher.safetensors'), nodePath.join(root, 'in.safetensors'));
  fs.symlinkSync(root, nodePath.join(tmp, 'data-link'));

  it('refuses a link out of the roots, naming the link and its target', () => {
    assert.throws(() => checkReadPath(nodePath.join(root, 'out.safetensors'), [root], 'teacher file'), {
      message: `teacher file ${nodePath.join(root, 'out.safetensors')} (a link to ${nodePath.join(elsewhere, 'secret.safetensors')}) is outside the registered dataset and run folders`,
    });
    assert.throws(() =>
      checkReadPath(nodePath.join(root, '..', 'elsewhere', 'secret.safetensors'), [root], 'x'),
    );
  });

  it('accepts a link inside and gives its real path; a root given through a link holds its real paths', () => {
    const inside = nodePath.join(root, 'teacher.safetensors');
    assert.equal(checkReadPath(nodePath.join(root, 'in.safetensors'), [root], 'teacher file'), inside);
    assert.equal(checkReadPath(inside, [nodePath.join(tmp, 'data-link')], 'teacher file'), inside);
    assert.equal(
      checkReadPath(nodePath.join(tmp, 'data-link', 'teacher.safetensors'), [root], 'teacher file'),
      inside,
    );
  });
});

describe('run folders and export targets', () => {
  it('a run folder is a config.json of a run kind, or one beside metrics or checkpoints', () => {
    const fresh = mkdir('runs', 'fresh');
    fs.writeFileSync(nodePath.join(fresh, 'config.json'), JSON.stringify({ kind: 'pretrain' }));
    const old = mkdir('runs', 'old');
    fs.writeFileSync(nodePath.join(old, 'config.json'), '{}');
    fs.writeFileSync(nodePath.join(old, 'metrics.jsonl'), '');
    const hf = mkdir('hf-model');
    fs.writeFileSync(nodePath.join(hf, 'config.json'), JSON.stringify({ model_type: 'clip' }));
    assert.deepEqual([fresh, old, hf, mkdir('plain')].map(isRunFolder), [true, true, false, false]);
    // beside a Hugging Face model's config.json an export is fine
    const target = nodePath.join(hf, 'model.safetensors');
    assert.equal(checkExportTarget(target, { runDir: fresh, folder: false }), target);
  });

  it("a tfjs export may be a run's export folder itself; a file may not take that name", () => {
    const run = mkdir('runs', 'r');
    fs.writeFileSync(nodePath.join(run, 'config.json'), JSON.stringify({ kind: 'finetune' }));
    const exportDir = nodePath.join(run, 'export');
    assert.equal(checkExportTarget(exportDir, { runDir: run, folder: true }), exportDir);
    assert.throws(
      () => checkExportTarget(exportDir, { runDir: run, folder: false }),
      /is inside the run folder/,
    );
    assert.equal(
      checkExportTarget(nodePath.join(exportDir, 'deep', 'x.safetensors'), { runDir: run, folder: false }),
      nodePath.join(exportDir, 'deep', 'x.safetensors'),
    );
  });
});
