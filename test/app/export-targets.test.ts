// Where an export may be written (app/runs/paths.ts): the run's own export folder, never another run's files, the
// install, a dataset folder or over a file unless asked; real paths, links resolved; files put in place atomically.
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as nodePath from 'node:path';
import { after, before, describe, it } from 'node:test';
import { BUILTIN_SAMPLE_DIR } from '../../app/datasets/index.js';
import { exportRun } from '../../app/worker/export.js';
import { INSTALL_DIR } from '../../app/runs/paths.js';
import { BUILTIN_TEACHER } from '../../app/teachers/index.js';
import { initBackend } from '../../engine/backend.js';
import { SafetensorsFile } from '../../engine/io/safetensors.js';
import { oneStepRun } from './paths-helpers.js';

const tmp = fs.mkdtempSync(nodePath.join(os.tmpdir(), 'digpt-export-'));
const runA = nodePath.join(tmp, 'runs', 'a');
const runB = nodePath.join(tmp, 'runs', 'b');

before(async () => {
  await initBackend();
  await oneStepRun(runA);
  await oneStepRun(runB);
});

after(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** Every file below `dir`, relative, with its bytes: what a refused export must leave exactly as it was. */
function snapshot(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const rel of fs.readdirSync(dir, { recursive: true, encoding: 'utf8' }).sort()) {
    const p = nodePath.join(dir, rel);
    if (fs.lstatSync(p).isFile()) out.set(rel, fs.readFileSync(p).toString('base64'));
  }
  return out;
}

function tensorsOf(path: string): number {
  const f = SafetensorsFile.open(path);
  try {
    return f.keys().length;
  } finally {
    f.close();
  }
}

/** No temporary file of an export is left beside its target. */
function assertNoTemp(dir: string): void {
  assert.deepEqual(
    fs.readdirSync(dir).filter((f) => f.endsWith('.tmp') || f.includes('.tmp-')),
    [],
  );
}

describe('export targets', () => {
  it("writes the run's default path, and a re-export of the run replaces it", async () => {
    const first = await exportRun(runA, 'timm');
    assert.equal(first.path, nodePath.join(fs.realpathSync(runA), 'export', 'timm.safetensors'));
    const again = await exportRun(runA, 'timm');
    assert.equal(again.path, first.path);
    assert.equal(tensorsOf(again.path), first.tensors);
    const tfjs = await exportRun(runA, 'tfjs');
    await exportRun(runA, 'tfjs');
    assert.deepEqual(fs.readdirSync(tfjs.path).sort(), ['model.json', 'weights.bin']);
    assertNoTemp(nodePath.dirname(first.path));
  });

  it('refuses an existing file unless overwrite is given, naming the file and the flag', async () => {
    const dir = nodePath.join(tmp, 'out');
    fs.mkdirSync(dir, { recursive: true });
    const target = nodePath.join(dir, 'mine.safetensors');
    fs.writeFileSync(target, 'my own notes');
    await assert.rejects(exportRun(runA, 'timm', target), (e: Error) => {
      assert.match(e.message, /already exists/);
      assert.ok(e.message.includes(fs.realpathSync(target)), e.message);
      assert.match(e.message, /overwrite/);
      return true;
    });
    assert.equal(fs.readFileSync(target, 'utf8'), 'my own notes');
    const r = await exportRun(runA, 'timm', target, { overwrite: true });
    assert.ok(tensorsOf(r.path) > 10);
    // a tfjs folder: an existing model.json or weights.bin is the existing export
    const folder = nodePath.join(dir, 'tfjs-here');
    fs.mkdirSync(folder);
    fs.writeFileSync(nodePath.join(folder, 'model.json'), '{}');
    await assert.rejects(exportRun(runA, 'tfjs', folder), /model\.json already exists/);
    assert.equal(fs.readFileSync(nodePath.join(folder, 'model.json'), 'utf8'), '{}');
    await exportRun(runA, 'tfjs', folder, { overwrite: true });
    assert.deepEqual(fs.readdirSync(folder).sort(), ['model.json', 'weights.bin']);
    // a tfjs export goes to a folder, a safetensors one to a file
    await assert.rejects(exportRun(runA, 'tfjs', target, { overwrite: true }), /is not a folder/);
    await assert.rejects(exportRun(runA, 'timm', folder, { overwrite: true }), /not a regular file/);
    assertNoTemp(dir);
  });

  it("never writes a run's config.json, metrics.jsonl or checkpoints, its own or another's, even with overwrite", async () => {
    const before = snapshot(nodePath.join(tmp, 'runs'));
    const ck = fs
      .readdirSync(nodePath.join(runB, 'checkpoints'))
      .find((f) => f.startsWith('step-')) as string;
    for (const out of [
      nodePath.join(runB, 'config.json'),
      nodePath.join(runB, 'metrics.jsonl'),
      nodePath.join(runB, 'checkpoints', ck, 'model.safetensors'),
      nodePath.join(runB, 'checkpoints', 'new.safetensors'),
      nodePath.join(runA, 'config.json'),
      nodePath.join(runA, 'timm.safetensors'),
      nodePath.join(runB, 'export'), // a file may not take the export folder's name
    ]) {
      await assert.rejects(exportRun(runA, 'timm', out, { overwrite: true }), (e: Error) => {
        assert.match(
          e.message,
          /^export path .* is inside the run folder .*; an export goes in its export\/ folder/,
        );
        return true;
      });
    }
    await assert.rejects(exportRun(runA, 'tfjs', runB, { overwrite: true }), /is inside the run folder/);
    assert.deepEqual(snapshot(nodePath.join(tmp, 'runs')), before);
    // another run's own export folder is an export folder
    const r = await exportRun(runA, 'digpt', nodePath.join(runB, 'export', 'from-a.safetensors'));
    assert.ok(tensorsOf(r.path) > 10);
  });

  it('never writes into the install: its code, the built-in sample and teacher, its own files', async () => {
    const teacherBefore = fs.readFileSync(BUILTIN_TEACHER);
    const sampleBefore = snapshot(BUILTIN_SAMPLE_DIR);
    for (const out of [
      nodePath.join(BUILTIN_SAMPLE_DIR, 'new.safetensors'),
      nodePath.join(BUILTIN_SAMPLE_DIR, 'train-images-idx3-ubyte.gz'),
      BUILTIN_TEACHER,
      nodePath.join(INSTALL_DIR, 'engine', 'x.safetensors'),
      nodePath.join(INSTALL_DIR, 'package.json'),
    ]) {
      await assert.rejects(
        exportRun(runA, 'timm', out, { overwrite: true }),
        /inside the workbench's install folder|one of the workbench's own files/,
      );
    }
    assert.ok(fs.readFileSync(BUILTIN_TEACHER).equals(teacherBefore));
    assert.deepEqual(snapshot(BUILTIN_SAMPLE_DIR), sampleBefore);
    assert.ok(!fs.existsSync(nodePath.join(INSTALL_DIR, 'engine', 'x.safetensors')));
  });

  it('resolves links before the check, and replaces (never follows) a link planted at the target name', async () => {
    const links = nodePath.join(tmp, 'links');
    fs.mkdirSync(links, { recursive: true });
    fs.symlinkSync(runB, nodePath.join(links, 'to-b'));
    fs.symlinkSync(BUILTIN_SAMPLE_DIR, nodePath.join(links, 'to-sample'));
    const before = snapshot(runB);
    await assert.rejects(
      exportRun(runA, 'timm', nodePath.join(links, 'to-b', 'config.json'), { overwrite: true }),
      /is inside the run folder/,
    );
    await assert.rejects(
      exportRun(runA, 'timm', nodePath.join(links, 'to-sample', 'x.safetensors')),
      /install folder/,
    );
    // a not-yet-existing path below a link: the nearest existing ancestor is resolved
    await assert.rejects(
      exportRun(runA, 'tfjs', nodePath.join(links, 'to-b', 'new', 'deeper')),
      /is inside the run folder/,
    );
    // a link named like the target, pointing at a run's config.json: without overwrite refused (it exists), with
    // overwrite the link itself is replaced by the export and the run's file stays as it was
    const planted = nodePath.join(links, 'planted.safetensors');
    fs.symlinkSync(nodePath.join(runB, 'config.json'), planted);
    await assert.rejects(exportRun(runA, 'timm', planted), /already exists/);
    await exportRun(runA, 'timm', planted, { overwrite: true });
    assert.ok(fs.lstatSync(planted).isFile());
    assert.ok(tensorsOf(planted) > 10);
    assert.deepEqual(snapshot(runB), before);
  });

  it('within and notWithin (the workbench): the export folders, and never a dataset folder', async () => {
    const ws = nodePath.join(tmp, 'ws');
    const dataset = nodePath.join(tmp, 'dataset');
    fs.mkdirSync(nodePath.join(dataset, 'cat'), { recursive: true });
    const within = [nodePath.join(runA, 'export'), nodePath.join(ws, 'exports')];
    await assert.rejects(
      exportRun(runA, 'timm', nodePath.join(tmp, 'elsewhere.safetensors'), { within }),
      /elsewhere\.safetensors is outside the export folders/,
    );
    const ok = await exportRun(runA, 'timm', nodePath.join(ws, 'exports', 'a.safetensors'), { within });
    assert.ok(tensorsOf(ok.path) > 10);
    await assert.rejects(
      exportRun(runA, 'timm', nodePath.join(dataset, 'cat', 'model.safetensors'), { notWithin: [dataset] }),
      /is inside the dataset folder .*; a dataset folder is read, never written/,
    );
    assert.deepEqual(fs.readdirSync(nodePath.join(dataset, 'cat')), []);
  });
});
