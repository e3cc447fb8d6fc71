// Nothing non-finite is checkpointed (weights and AdamW moments checked first), a broken teacher is named, a full
// disk names the file and keeps the previous checkpoint, and a run that fails before its first step leaves no folder.
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as nodePath from 'node:path';
import { after, before, describe, it } from 'node:test';
import { listCheckpoints, verifyCheckpoint, writeCheckpoint } from '../../app/runs/checkpoint.js';
import { nonFiniteIn } from '../../app/worker/checkpoints.js';
import { DiskFullError } from '../../app/runs/disk.js';
import { removeUnstartedRun, saveStreamState } from '../../app/worker/run-files.js';
import { BUILTIN_TEACHER } from '../../app/teachers/index.js';
import { FinetuneRun, type LabelledImageSet } from '../../app/worker/finetune-run.js';
import { PretrainRun } from '../../app/worker/pretrain-run.js';
import { initBackend } from '../../engine/backend.js';
import { readSafetensors, writeSafetensors, type TensorToWrite } from '../../engine/io/safetensors.js';
import { digpt, images, MICRO, sandbox, TRAIN } from './runs-helpers.js';

before(async () => {
  await initBackend();
});

const box = sandbox('digpt-guards-');
const data = images(8, 36, 3);
let n = 0;
const fresh = (): string => nodePath.join(box.dir, `run-${n++}`);

/** Every checkpoint of a run verifies, its tensors' values included. */
function allFinite(dir: string): boolean {
  return listCheckpoints(nodePath.join(dir, 'checkpoints')).every(
    (f) => verifyCheckpoint(f, { values: nonFiniteIn }).ok,
  );
}

/** The built-in teacher with one NaN in its first block's qkv weight (every token it gives is then NaN). */
function brokenTeacher(): string {
  const t = readSafetensors(BUILTIN_TEACHER);
  const tensors = new Map<string, TensorToWrite>();
  for (const [k, v] of t.tensors) {
    const d = new Float32Array(v.data as Float32Array);
    if (k === 'blocks.0.attn.qkv.weight') d[0] = NaN;
    tensors.set(k, { dtype: 'F32', shape: v.shape, data: d });
  }
  const file = nodePath.join(box.dir, 'broken-teacher.safetensors');
  writeSafetensors(file, tensors, t.metadata);
  return file;
}

describe('the NaN guard', () => {
  it('with --blr 1e6 stops before writing a checkpoint with Inf moments, naming the step, tensor and last good one', async () => {
    const dir = fresh();
    const r = PretrainRun.create(
      dir,
      { ...MICRO, accum: 2, steps: 10, blr: 1e6, warmup_steps: 1, checkpoint_every: 1 },
      data,
    );
    let message = '';
    try {
      await r.runSteps(10);
    } catch (e) {
      message = (e as Error).message;
    }
    const step = r.step;
    r.dispose();
    assert.match(
      message,
      new RegExp(
        `^step ${step}: (weight|AdamW (first|second) moment \\([mv]\\) of) \\S+ holds non-finite values \\((-?Infinity|NaN)\\); ` +
          `no checkpoint of step ${step} was written and the run stopped, keeping its last good checkpoint ` +
          `${nodePath.join(dir, 'checkpoints', `step-${String(step - 1).padStart(8, '0')}`)}`,
      ),
    );
    assert.ok(step < 10, `stopped at step ${step}`);
    const written = listCheckpoints(nodePath.join(dir, 'checkpoints')).map((f) => nodePath.basename(f));
    assert.equal(written[0], `step-${String(step - 1).padStart(8, '0')}`);
    assert.ok(allFinite(dir), 'every checkpoint written holds finite values only');
  });

  it('guards a fine-tuning run the same way: a weight gone to Inf is named and no checkpoint is written', async () => {
    const set = (count: number, seed: number): LabelledImageSet => ({
      ...images(count, 20, seed),
      labels: Int32Array.from({ length: count }, (_, i) => i % 2),
      classes: ['a', 'b'],
    });
    const dir = fresh();
    const model = { img_size: 16, patch_size: 4, embed_dim: 16, depth: 1, num_heads: 2 };
    const r = FinetuneRun.create(
      dir,
      { from: 'scratch', model, batch: 4, steps: 10, checkpoint_every: 2 },
      set(16, 1),
      set(8, 2),
    );
    await r.runSteps(2);
    const name = 'blocks.0.mlp.fc1.weight';
    const w = await r.model.params.read(name);
    w[5] = -Infinity;
    r.model.params.assign(name, w, r.model.params.specs.get(name)?.shape ?? []);
    try {
      await assert.rejects(
        () => r.save(),
        new RegExp(
          `^NonFiniteStateError: step 2: weight ${name.replace(/[.]/g, '\\.')} holds non-finite values \\(-Infinity\\); ` +
            `no checkpoint of step 2 was written and the run stopped, keeping its last good checkpoint ` +
            `${nodePath.join(dir, 'checkpoints', 'step-00000002')}`,
        ),
      );
    } finally {
      r.dispose();
    }
    assert.deepEqual(fs.readdirSync(nodePath.join(dir, 'checkpoints')), ['step-00000002']);
    assert.ok(allFinite(dir));
  });

  it('a teacher whose outputs are not finite stops the run naming the teacher file, and nothing is logged', async () => {
    const teacher = brokenTeacher();
    const dir = fresh();
    const r = PretrainRun.create(dir, { ...MICRO, teacher }, data);
    await assert.rejects(
      () => r.runSteps(1),
      new RegExp(
        `^NonFiniteTeacherError: teacher ${teacher.replace(/[.]/g, '\\.')} gave non-finite outputs \\(Inf or NaN\\) at step 1`,
      ),
    );
    r.dispose();
    assert.equal(fs.readFileSync(nodePath.join(dir, 'metrics.jsonl'), 'utf8'), '');
    assert.deepEqual(listCheckpoints(nodePath.join(dir, 'checkpoints')), []);
  });
});

describe('a full disk', () => {
  it('names metrics.jsonl when it cannot be appended to, and the previous checkpoint stays valid', async () => {
    const dir = fresh();
    const r = PretrainRun.create(dir, { ...MICRO, checkpoint_every: 2 }, data);
    await r.runSteps(2);
    const p = nodePath.join(dir, 'metrics.jsonl');
    fs.rmSync(p);
    fs.symlinkSync('/dev/full', p);
    try {
      await assert.rejects(
        () => r.runSteps(1),
        (e: unknown) =>
          e instanceof DiskFullError && e.message.startsWith(`disk full while writing ${p}: ENOSPC`),
      );
    } finally {
      r.dispose();
    }
    const ck = listCheckpoints(nodePath.join(dir, 'checkpoints'));
    assert.deepEqual(
      ck.map((f) => nodePath.basename(f)),
      ['step-00000002'],
    );
    assert.ok(verifyCheckpoint(ck[0] as string, { values: nonFiniteIn }).ok);
  });

  it('names the checkpoint file it was writing, leaves no .tmp folder, and keeps the older checkpoints', async () => {
    const dir = fresh();
    const r = PretrainRun.create(dir, { ...MICRO, checkpoint_every: 2 }, data);
    await r.runSteps(2);
    r.dispose();
    const ck = nodePath.join(dir, 'checkpoints');
    assert.throws(
      () =>
        writeCheckpoint(ck, 4, (folder) => {
          // this file lands on a full device
          fs.symlinkSync('/dev/full', nodePath.join(folder, 'state.json'));
          saveStreamState(folder, { step: 4 });
        }),
      (e: unknown) =>
        e instanceof DiskFullError &&
        e.message.startsWith(
          `disk full while writing ${nodePath.join(ck, 'step-00000004', 'state.json')}: ENOSPC`,
        ) &&
        e.message.endsWith('checkpoint step-00000004 was not written; the older checkpoints are untouched'),
    );
    assert.deepEqual(fs.readdirSync(ck), ['step-00000002']);
    assert.ok(verifyCheckpoint(nodePath.join(ck, 'step-00000002'), { values: nonFiniteIn }).ok);
    const again = PretrainRun.resume(dir, data);
    assert.equal(again.step, 2);
    again.dispose();
  });
});

describe('no half-made run folder', () => {
  it('removes only a folder that holds nothing but what creation wrote', async () => {
    const bare = fresh();
    PretrainRun.create(bare, MICRO, data).dispose();
    fs.mkdirSync(nodePath.join(bare, 'checkpoints'));
    assert.equal(removeUnstartedRun(bare), true);
    assert.ok(!fs.existsSync(bare));
    for (const extra of ['notes.txt', '.lock', 'checkpoints/step-00000000']) {
      const dir = fresh();
      PretrainRun.create(dir, MICRO, data).dispose();
      fs.mkdirSync(nodePath.dirname(nodePath.join(dir, extra)), { recursive: true });
      fs.writeFileSync(nodePath.join(dir, extra), '');
      assert.equal(removeUnstartedRun(dir), false, extra);
      assert.ok(fs.existsSync(nodePath.join(dir, 'config.json')), extra);
    }
    const logged = fresh();
    PretrainRun.create(logged, MICRO, data).dispose();
    fs.writeFileSync(nodePath.join(logged, 'metrics.jsonl'), '{"step":1,"loss":1}\n');
    assert.equal(removeUnstartedRun(logged), false);
  });

  it('digpt pretrain with a broken teacher fails naming it and leaves no run folder behind', async () => {
    const teacher = brokenTeacher();
    const out = nodePath.join(box.dir, 'cli-broken-teacher');
    const r = digpt(box, [
      'pretrain',
      ...TRAIN.map((a) => (a === 'pixels' ? teacher : a)),
      '--steps',
      '3',
      '--out',
      out,
    ]);
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, new RegExp(`teacher ${teacher.replace(/[.]/g, '\\.')} gave non-finite outputs`));
    assert.ok(!fs.existsSync(out), `${out} was left behind`);
  });
});

after(() => {
  fs.rmSync(box.dir, { recursive: true, force: true });
});
