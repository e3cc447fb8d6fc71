// Resume: every rejected checkpoint named with its reason, refusal (history kept) when none is valid, leftovers
// removed, and metrics.jsonl cut back atomically (a kill -9 in the middle never leaves it empty).
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as nodePath from 'node:path';
import { after, before, describe, it } from 'node:test';
import { checkpointName, verifyCheckpoint, writeCheckpoint } from '../../app/runs/checkpoint.js';
import { readRunConfig } from '../../app/runs/config.js';
import { parseMetrics, readMetrics, truncateMetrics } from '../../app/runs/metrics.js';
import { FinetuneRun, type LabelledImageSet } from '../../app/worker/finetune-run.js';
import { PretrainRun } from '../../app/worker/pretrain-run.js';
import { initBackend } from '../../engine/backend.js';
import { readSafetensors, writeSafetensors, type TensorToWrite } from '../../engine/io/safetensors.js';
import { digptSpecs } from '../../engine/models/digpt.js';
import { fromTorch } from '../../engine/models/params.js';
import { digpt, images, MICRO, sandbox, spawnDigpt, TRAIN } from './runs-helpers.js';

before(async () => {
  await initBackend();
});

const box = sandbox('digpt-resume-');
const data = images(8, 36, 2);
let n = 0;
const fresh = (): string => nodePath.join(box.dir, `run-${n++}`);
const metricsText = (dir: string): string => fs.readFileSync(nodePath.join(dir, 'metrics.jsonl'), 'utf8');

/** A run of 6 steps with a checkpoint every `every` steps. */
async function sixSteps(every = 2): Promise<string> {
  const dir = fresh();
  const r = PretrainRun.create(dir, { ...MICRO, checkpoint_every: every }, data);
  await r.runSteps(6);
  r.dispose();
  return dir;
}

/**
 * Rewrites checkpoint `step` as code without the write-time guard did: an Inf in a second moment, and a manifest
 * that verifies. Returns the tensor made non-finite.
 */
function poisonMoments(dir: string, step: number): string {
  const ck = nodePath.join(dir, 'checkpoints');
  const src = nodePath.join(ck, checkpointName(step));
  const saved = fs.mkdtempSync(nodePath.join(box.dir, 'ck-'));
  for (const f of ['model.safetensors', 'optimizer.safetensors', 'state.json'])
    fs.copyFileSync(nodePath.join(src, f), nodePath.join(saved, f));
  const opt = readSafetensors(nodePath.join(saved, 'optimizer.safetensors'));
  const tensors = new Map<string, TensorToWrite>();
  const poisoned = [...opt.tensors.keys()].sort().find((k) => k.startsWith('v.')) as string;
  for (const [k, t] of opt.tensors) {
    const d = new Float32Array(t.data as Float32Array);
    if (k === poisoned) d[0] = Infinity;
    tensors.set(k, { dtype: 'F32', shape: t.shape, data: d });
  }
  writeCheckpoint(ck, step, (folder) => {
    fs.copyFileSync(nodePath.join(saved, 'model.safetensors'), nodePath.join(folder, 'model.safetensors'));
    fs.copyFileSync(nodePath.join(saved, 'state.json'), nodePath.join(folder, 'state.json'));
    writeSafetensors(nodePath.join(folder, 'optimizer.safetensors'), tensors, opt.metadata);
  });
  return poisoned;
}

describe('resume', () => {
  it('names every checkpoint it rejects and why, resumes from the newest valid one, and removes .tmp-step leftovers', async () => {
    const dir = await sixSteps(1);
    const ck = nodePath.join(dir, 'checkpoints');
    fs.appendFileSync(nodePath.join(ck, 'step-00000006', 'model.safetensors'), 'x');
    fs.rmSync(nodePath.join(ck, 'step-00000005', 'manifest.json'));
    const poisoned = poisonMoments(dir, 4);
    fs.mkdirSync(nodePath.join(ck, '.tmp-step-00000007-1-1'));
    // a checksum cannot see the Inf: only the check of the values does
    assert.ok(verifyCheckpoint(nodePath.join(ck, 'step-00000004')).ok);
    const warnings: string[] = [];
    const r = PretrainRun.resume(dir, data, { onWarn: (t) => warnings.push(t) });
    assert.equal(r.step, 3);
    r.dispose();
    assert.deepEqual(warnings, [
      `removed ${nodePath.join(ck, '.tmp-step-00000007-1-1')}, the leftover of an interrupted checkpoint write`,
      `checkpoint rejected: ${nodePath.join(ck, 'step-00000006', 'model.safetensors')}: size differs from the manifest`,
      `checkpoint rejected: ${nodePath.join(ck, 'step-00000005')}: no manifest.json (incomplete write)`,
      `checkpoint rejected: ${nodePath.join(ck, 'step-00000004', 'optimizer.safetensors')}: ${poisoned} holds non-finite values (Infinity at index 0)`,
    ]);
    assert.ok(!fs.existsSync(nodePath.join(ck, '.tmp-step-00000007-1-1')));
    assert.deepEqual(
      readMetrics(dir).map((m) => m.step),
      [1, 2, 3],
    );
  });

  it('refuses when no checkpoint is valid, saying why each failed, and keeps metrics.jsonl as it was', async () => {
    const dir = await sixSteps();
    const ck = nodePath.join(dir, 'checkpoints');
    fs.appendFileSync(nodePath.join(ck, 'step-00000006', 'optimizer.safetensors'), 'x');
    fs.rmSync(nodePath.join(ck, 'step-00000004', 'manifest.json'));
    poisonMoments(dir, 2);
    const before = metricsText(dir);
    assert.throws(
      () => PretrainRun.resume(dir, data),
      (e: unknown) => {
        const m = (e as Error).message;
        return (
          m.startsWith(`cannot resume ${dir}: none of its 3 checkpoint(s) is usable (`) &&
          m.includes('step-00000006/optimizer.safetensors: size differs from the manifest') &&
          m.includes('step-00000004: no manifest.json') &&
          /step-00000002\/optimizer\.safetensors: v\.\S+ holds non-finite values/.test(m) &&
          m.includes('metrics.jsonl (steps up to 6) is kept as it was')
        );
      },
    );
    assert.equal(metricsText(dir), before);
    // the lock was let go: the refusal can be repeated (no stale lock of ours)
    assert.throws(() => PretrainRun.resume(dir, data), /cannot resume/);
  });

  it('refuses a run that logged steps but wrote no checkpoint; one that never logged a step starts again', async () => {
    const dir = fresh();
    const r = PretrainRun.create(dir, { ...MICRO, checkpoint_every: 100 }, data);
    await r.runSteps(3);
    r.dispose();
    const before = metricsText(dir);
    assert.throws(
      () => PretrainRun.resume(dir, data),
      /cannot resume .*: it has no checkpoint \(it stopped before its first one\); .*metrics\.jsonl \(steps up to 3\) is kept as it was/,
    );
    assert.equal(metricsText(dir), before);
    const empty = fresh();
    PretrainRun.create(empty, MICRO, data).dispose();
    const again = PretrainRun.resume(empty, data);
    assert.equal(again.step, 0);
    again.dispose();
  });

  it('a fine-tuning run refuses the same way', async () => {
    const set = (count: number, seed: number): LabelledImageSet => ({
      ...images(count, 20, seed),
      labels: Int32Array.from({ length: count }, (_, i) => i % 2),
      classes: ['a', 'b'],
    });
    const train = set(16, 1);
    const val = set(8, 2);
    const dir = fresh();
    const model = { img_size: 16, patch_size: 4, embed_dim: 16, depth: 1, num_heads: 2 };
    const r = FinetuneRun.create(
      dir,
      { from: 'scratch', model, batch: 4, steps: 4, checkpoint_every: 100 },
      train,
      val,
    );
    await r.runSteps(2);
    r.dispose();
    const before = metricsText(dir);
    assert.throws(() => FinetuneRun.resume(dir, train, val), /cannot resume .*: it has no checkpoint/);
    assert.equal(metricsText(dir), before);
  });
});

describe('optimizer.safetensors', () => {
  it('is version 2, the moments in PyTorch shapes; a version-1 file (flat, engine layout) resumes to the same run', async () => {
    const dir = await sixSteps(3);
    const folder = nodePath.join(dir, 'checkpoints', checkpointName(3));
    const opt = readSafetensors(nodePath.join(folder, 'optimizer.safetensors'));
    assert.deepEqual(opt.metadata, { format_version: '2', step: '3' });
    const weights = readSafetensors(nodePath.join(folder, 'model.safetensors'));
    const config = readRunConfig(dir);
    assert.equal(config.kind, 'pretrain');
    const trained = digptSpecs(config.model).filter((s) => s.trainable);
    assert.deepEqual(
      [...opt.tensors.keys()].sort(),
      trained.flatMap((s) => [`m.${s.name}`, `v.${s.name}`]).sort(),
    );
    for (const s of trained)
      assert.deepEqual(opt.tensors.get(`m.${s.name}`)?.shape, weights.tensors.get(s.name)?.shape);

    // the same checkpoint as version 1 wrote it, in a copy of the run
    const v1 = fresh();
    fs.cpSync(dir, v1, { recursive: true });
    const v1Folder = nodePath.join(v1, 'checkpoints', checkpointName(3));
    fs.rmSync(nodePath.join(v1, 'checkpoints', checkpointName(6)), { recursive: true });
    truncateMetrics(v1, 3);
    const flat = new Map<string, TensorToWrite>();
    for (const s of trained)
      for (const label of ['m', 'v']) {
        const data = fromTorch(s, opt.tensors.get(`${label}.${s.name}`)?.data as Float32Array);
        flat.set(`${label}.${s.name}`, { dtype: 'F32', shape: [data.length], data });
      }
    const ck = nodePath.join(v1, 'checkpoints');
    const saved = fs.mkdtempSync(nodePath.join(box.dir, 'v1-'));
    for (const f of ['model.safetensors', 'state.json'])
      fs.copyFileSync(nodePath.join(v1Folder, f), nodePath.join(saved, f));
    fs.rmSync(v1Folder, { recursive: true });
    writeCheckpoint(ck, 3, (f) => {
      for (const name of ['model.safetensors', 'state.json'])
        fs.copyFileSync(nodePath.join(saved, name), nodePath.join(f, name));
      writeSafetensors(nodePath.join(f, 'optimizer.safetensors'), flat, { step: '3' });
    });
    const r = PretrainRun.resume(v1, data);
    await r.runSteps(3);
    r.dispose();
    const losses = (d: string) => readMetrics(d).flatMap((m) => ('loss' in m ? [[m.step, m.loss]] : []));
    assert.deepEqual(losses(v1), losses(dir));
    // what it writes from then on is version 2 again
    const after6 = readSafetensors(nodePath.join(ck, checkpointName(6), 'optimizer.safetensors'));
    assert.equal(after6.metadata['format_version'], '2');
  });

  it('names the file and the key when a moment has the wrong shape or an unknown format version', async () => {
    const dir = await sixSteps(3);
    const ck = nodePath.join(dir, 'checkpoints');
    const file = nodePath.join(ck, checkpointName(6), 'optimizer.safetensors');
    const opt = readSafetensors(file);
    const bent = new Map<string, TensorToWrite>();
    for (const [k, t] of opt.tensors)
      bent.set(k, {
        dtype: 'F32',
        shape: k === 'm.cls_token' ? [t.data.length] : t.shape,
        data: t.data as Float32Array,
      });
    const rewrite = (meta: Record<string, string>) => {
      fs.rmSync(nodePath.join(ck, checkpointName(6)), { recursive: true });
      const src = nodePath.join(ck, checkpointName(3));
      writeCheckpoint(ck, 6, (f) => {
        for (const name of ['model.safetensors', 'state.json'])
          fs.copyFileSync(nodePath.join(src, name), nodePath.join(f, name));
        writeSafetensors(nodePath.join(f, 'optimizer.safetensors'), bent, meta);
      });
    };
    rewrite({ format_version: '2', step: '6' });
    assert.throws(
      () => PretrainRun.resume(dir, data),
      /optimizer\.safetensors: m\.cls_token has shape \[\d+\], the parameter has \[1, 1, \d+\]/,
    );
    rewrite({ format_version: '9', step: '6' });
    assert.throws(
      () => PretrainRun.resume(dir, data),
      /optimizer format_version 9 is not one this workbench reads/,
    );
  });
});

describe('metrics.jsonl', () => {
  it('one reader skips a line cut by a crash; the cut-back keeps lines byte for byte and writes only when needed', async () => {
    const dir = fresh();
    fs.mkdirSync(dir);
    const p = nodePath.join(dir, 'metrics.jsonl');
    fs.writeFileSync(
      p,
      '{"step":1,"loss":2.5}\n{"step":2,"knn_top1":0.1}\n{"step":3,"loss":2}\n{"step":4,"lo',
    );
    assert.deepEqual(parseMetrics(fs.readFileSync(p, 'utf8')).dropped, 1);
    assert.deepEqual(
      readMetrics(dir).map((r) => r.step),
      [1, 2, 3],
    );
    assert.deepEqual(truncateMetrics(dir, 2), { kept: 2, dropped: 2 });
    assert.equal(fs.readFileSync(p, 'utf8'), '{"step":1,"loss":2.5}\n{"step":2,"knn_top1":0.1}\n');
    const mtime = fs.statSync(p).mtimeMs;
    const ino = fs.statSync(p).ino;
    assert.deepEqual(truncateMetrics(dir, 5), { kept: 2, dropped: 0 });
    assert.equal(fs.statSync(p).ino, ino);
    assert.equal(fs.statSync(p).mtimeMs, mtime);
  });

  it('a kill -9 of digpt resume while it cuts back an 80,005-line metrics.jsonl never leaves it empty or short', async () => {
    const run = nodePath.join(box.dir, 'big');
    const r = digpt(box, ['pretrain', ...TRAIN, '--steps', '2', '--checkpoint-every', '2', '--out', run]);
    assert.equal(r.status, 0, r.stderr);
    // as if the run had reached step 80,005 with its last checkpoint at step 80,000 (the weights of step 2 will do)
    const ck = nodePath.join(run, 'checkpoints');
    const src = nodePath.join(ck, checkpointName(2));
    writeCheckpoint(ck, 80_000, (folder) => {
      for (const f of ['model.safetensors', 'optimizer.safetensors'])
        fs.copyFileSync(nodePath.join(src, f), nodePath.join(folder, f));
      const state = JSON.parse(fs.readFileSync(nodePath.join(src, 'state.json'), 'utf8')) as { step: number };
      fs.writeFileSync(nodePath.join(folder, 'state.json'), JSON.stringify({ ...state, step: 80_000 }));
    });
    const line = (s: number): string =>
      `${JSON.stringify({ step: s, loss: 1 + 1 / s, lr: 1e-3, agreement: 0.5, img_per_s: 99, epoch: 0, time: '2024-01-01T00:00:00.000Z' })}\n`;
    const p = nodePath.join(run, 'metrics.jsonl');
    const kept = Array.from({ length: 80_000 }, (_, i) => line(i + 1)).join('');
    const full = kept + [80_001, 80_002, 80_003, 80_004, 80_005].map(line).join('');
    fs.writeFileSync(p, full);
    for (const delayMs of [0, 1, 3]) {
      const child = spawnDigpt(box, ['resume', run, '--json']);
      const watcher = fs.watch(run, (_ev, name) => {
        // the first sign of the cut-back: metrics.jsonl or its new copy is being written
        if (typeof name === 'string' && name.startsWith('metrics.jsonl'))
          setTimeout(() => child.kill('SIGKILL'), delayMs);
      });
      const signal = await new Promise<NodeJS.Signals | null>((res) => child.once('exit', (_c, s) => res(s)));
      watcher.close();
      assert.equal(signal, 'SIGKILL', 'the resume was killed during its cut-back');
      const now = fs.readFileSync(p, 'utf8');
      assert.ok(
        now === full || now === kept,
        `after a kill -9 ${delayMs} ms into the cut-back metrics.jsonl has ${now.split('\n').length - 1} of 80,005 lines`,
      );
    }
    const done = digpt(box, ['resume', run, '--json']);
    assert.equal(done.status, 0, done.stderr);
    // the killed resumes left their lock; the next one took it over and said so
    assert.match(done.stdout, /took over the lock of run .*, which no longer runs/);
    assert.equal(fs.readFileSync(p, 'utf8'), kept);
  });
});

after(() => {
  fs.rmSync(box.dir, { recursive: true, force: true });
});
