// The training-run skeleton: the data stream's epochs and exact restore, checkpoints on schedule, one resume lookup.
import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as nodePath from 'node:path';
import { initBackend } from '../../engine/backend.js';
import { FinetuneRun, type LabelledImageSet } from '../../app/worker/finetune-run.js';
import { DataStream } from '../../app/worker/training-run.js';
import { images } from './runs-helpers.js';

/** Indices drawn by `n` calls of next(), with the epoch after each. */
function draw(s: DataStream, n: number): { idx: number[]; epochs: number[] } {
  const idx: number[] = [];
  const epochs: number[] = [];
  for (let i = 0; i < n; i++) {
    idx.push(s.next());
    epochs.push(s.epoch);
  }
  return { idx, epochs };
}

before(async () => {
  await initBackend();
});

const sorted = (xs: number[]): number[] => [...xs].sort((a, b) => a - b);
const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);

describe('DataStream', () => {
  it('without steps per epoch, an epoch is one pass: every image once, then the next epoch on a new order', async () => {
    const s = new DataStream(5, 7);
    const { idx, epochs } = draw(s, 10);
    assert.deepEqual(sorted(idx.slice(0, 5)), range(5));
    assert.deepEqual(sorted(idx.slice(5)), range(5));
    assert.notDeepEqual(idx.slice(0, 5), idx.slice(5));
    assert.deepEqual(epochs, [0, 0, 0, 0, 0, 1, 1, 1, 1, 1]);
  });

  it('with steps per epoch, the epoch changes at its first step and a pass ending within it reshuffles', async () => {
    const s = new DataStream(4, 3, 2);
    s.beginStep();
    assert.equal(s.epoch, 0);
    const first = draw(s, 6);
    assert.deepEqual(first.epochs, [0, 0, 0, 0, 0, 0]);
    assert.deepEqual(sorted(first.idx.slice(0, 4)), range(4));
    s.endStep();
    s.beginStep(); // step 1: still epoch 0
    assert.equal(s.epoch, 0);
    s.endStep();
    s.beginStep(); // step 2: epoch 1 starts on a fresh order
    assert.equal(s.epoch, 1);
    assert.deepEqual(sorted(draw(s, 4).idx), range(4));
  });

  it('a snapshot is state.json in its layout, and a restored stream draws exactly what the original draws', async () => {
    const a = new DataStream(6, 11);
    a.endStep();
    draw(a, 4);
    a.rng.normal();
    const saved = JSON.parse(JSON.stringify(a.snapshot())) as ReturnType<DataStream['snapshot']>;
    assert.deepEqual(Object.keys(saved), ['step', 'epoch', 'cursor', 'order', 'rng']);
    const b = new DataStream(6, 999);
    b.restore(saved);
    assert.equal(b.step, 1);
    assert.deepEqual(draw(b, 9), draw(a, 9));
    assert.equal(b.rng.normal(), a.rng.normal());
  });
});

describe('TrainingRun', () => {
  const set = (count: number, seed: number): LabelledImageSet => ({
    ...images(count, 20, seed),
    labels: Int32Array.from({ length: count }, (_, i) => i % 2),
    classes: ['a', 'b'],
  });
  const model = { img_size: 16, patch_size: 4, embed_dim: 16, depth: 1, num_heads: 2 };
  const fresh = (): string =>
    nodePath.join(fs.mkdtempSync(nodePath.join(os.tmpdir(), 'digpt-training-run-')), 'run');

  it('runSteps checkpoints every checkpoint_every steps and at the end, and returns the folders it wrote', async () => {
    const train = set(16, 1);
    const val = set(8, 2);
    const dir = fresh();
    const r = FinetuneRun.create(
      dir,
      { from: 'scratch', model, batch: 4, steps: 5, checkpoint_every: 2 },
      train,
      val,
    );
    try {
      const ck = (step: number): string =>
        nodePath.join(dir, 'checkpoints', `step-${String(step).padStart(8, '0')}`);
      assert.deepEqual(await r.runSteps(3), [ck(2)]);
      assert.deepEqual(await r.runSteps(10), [ck(4), ck(5)]);
      assert.deepEqual(await r.runSteps(1), []);
      assert.equal(r.step, 5);
      for (const step of [2, 4, 5]) assert.ok(fs.existsSync(nodePath.join(ck(step), 'state.json')));
    } finally {
      r.dispose();
    }
  });

  it('a resume looks its checkpoint up once: each rejected checkpoint is named once, and the run continues', async () => {
    const train = set(16, 1);
    const val = set(8, 2);
    const dir = fresh();
    const r = FinetuneRun.create(
      dir,
      { from: 'scratch', model, batch: 4, steps: 6, checkpoint_every: 2 },
      train,
      val,
    );
    await r.runSteps(4);
    r.dispose();
    // the newest checkpoint's weights are damaged: the resume falls back to step 2
    const bad = nodePath.join(dir, 'checkpoints', 'step-00000004', 'model.safetensors');
    const bytes = fs.readFileSync(bad);
    bytes[bytes.length - 1] = (bytes[bytes.length - 1] as number) ^ 0xff;
    fs.writeFileSync(bad, bytes);
    const warnings: string[] = [];
    const again = FinetuneRun.resume(dir, train, val, { onWarn: (t) => warnings.push(t) });
    try {
      assert.equal(warnings.filter((w) => w.includes('step-00000004')).length, 1, warnings.join('\n'));
      assert.equal(again.step, 2);
      await again.runSteps(10);
      assert.equal(again.step, 6);
    } finally {
      again.dispose();
    }
  });
});
