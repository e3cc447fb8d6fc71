// A replica thread: the same model on its own backend, computing the gradients of its share of each micro-batch.
import * as tf from '@tensorflow/tfjs-core';
import { workerData } from 'node:worker_threads';
import { initBackend } from '../backend.js';
import type { DigptConfig } from '../config.js';
import { createPretrainModel, type PretrainObjective } from '../models/factory.js';
import { microStep, unpackMetrics } from '../train/pretrain.js';
import { CTRL, views, writeText, type SharedLayout } from './shared.js';

interface Init {
  readonly config: DigptConfig;
  readonly objective: PretrainObjective;
  readonly buffer: SharedArrayBuffer;
  readonly layout: SharedLayout;
  readonly backend: string;
}

const init = workerData as Init;

/** Atomics.waitAsync (ES2024; in Node since 16): the result resolves through this thread's event loop. */
const waitAsync = (
  Atomics as unknown as {
    waitAsync(
      a: Int32Array,
      i: number,
      v: number,
    ): { async: false; value: string } | { async: true; value: Promise<string> };
  }
).waitAsync;
const v = views(init.buffer, init.layout);

function done(): void {
  Atomics.add(v.ctrl, CTRL.DONE, 1);
  Atomics.notify(v.ctrl, CTRL.DONE);
}

async function main(): Promise<void> {
  await initBackend(init.backend);
  const model = createPretrainModel(init.config, { objective: init.objective, seed: 0 });
  const params = model.params.trainable();
  const byName = new Map(params.map((p, i) => [p.name, i]));
  const offsets: number[] = [];
  let total = 0;
  for (const p of params) {
    offsets.push(total);
    total += p.variable.size;
  }
  let weightsSeen = -1;
  let go = Atomics.load(v.ctrl, CTRL.GO);
  // a pending waitAsync does not keep a worker's event loop alive: this timer does, until `close`
  const keepAlive = setInterval(() => undefined, 1 << 30);
  done(); // ready
  for (;;) {
    // waitAsync, not wait: between steps this thread goes back to its event loop, where V8 runs the tasks it
    // posts to the isolate; blocked in Atomics.wait for good, the replica's steps slowed from ~1.5 s to ~2.3 s
    // after a few steps (digpt-tiny-32, half of 32 images) while the training thread's stayed at ~1.5 s
    const w = waitAsync(v.ctrl, CTRL.GO, go);
    if (w.async) await w.value;
    go = Atomics.load(v.ctrl, CTRL.GO);
    if (Atomics.load(v.ctrl, CTRL.CMD) === 2) break;
    try {
      const t0 = performance.now();
      const wv = Atomics.load(v.ctrl, CTRL.WEIGHTS);
      if (wv !== weightsSeen) {
        // the trainer's weights after its last update, in the engine's layout
        params.forEach((p, i) => {
          const w = v.weights.subarray(offsets[i] as number, (offsets[i] as number) + p.variable.size);
          tf.tidy(() => p.variable.assign(tf.tensor(w.slice(), p.variable.shape)));
        });
        weightsSeen = wv;
      }
      const t1 = performance.now();
      const b = Atomics.load(v.ctrl, CTRL.BATCH);
      const c = init.config;
      const l = init.layout;
      const batch = {
        images: tf.tensor4d(v.images.slice(0, b * l.imageFloats), [b, c.img_size, c.img_size, 3]),
        teacher: tf.tensor3d(v.teacher.slice(0, b * l.teacherFloats), [
          b,
          1 + c.teacher_grid ** 2,
          c.teacher_dim,
        ]),
        order: v.order.slice(0, b * l.orderInts),
      };
      // the same forward, backward and metrics as the training thread's share (its errors too: this may be the
      // micro-batch whose errors the step reports)
      const { grads, packed } = microStep(model, batch, true);
      const m = unpackMetrics((await packed.data()) as Float32Array);
      packed.dispose();
      const t2 = performance.now();
      v.grads.fill(0);
      for (const [name, g] of grads) {
        const i = byName.get(name);
        if (i !== undefined) v.grads.set((await g.data()) as Float32Array, offsets[i]);
        g.dispose();
      }
      tf.dispose([batch.images, batch.teacher]);
      v.errors.set(m.clusterError);
      Atomics.store(v.ctrl, CTRL.ERRORS, m.clusterError.length);
      v.scalars.set([m.loss, m.lossGen, m.lossDis, m.agreement, t1 - t0, t2 - t1, performance.now() - t2]);
      Atomics.store(v.ctrl, CTRL.FAILED, 0);
    } catch (e) {
      writeText(v, e instanceof Error ? e.message : String(e));
      Atomics.store(v.ctrl, CTRL.FAILED, 1);
    }
    done();
  }
  clearInterval(keepAlive);
  model.dispose();
}

main().catch((e: unknown) => {
  writeText(v, e instanceof Error ? e.message : String(e));
  Atomics.store(v.ctrl, CTRL.FAILED, 1);
  done();
});
