// Data parallelism over two cores: each micro-batch is split between this thread and a replica thread (its own wasm
// backend), the gradients meet in shared memory, and this thread alone applies AdamW and hands the weights back.
//
// Why: tfjs-backend-wasm runs single-threaded under Node, so one training thread leaves the second core idle.
// The result equals the single-thread step up to float rounding (the mean gradient of a micro-batch is the
// size-weighted mean of its two halves' gradients); the optimizer state lives only here, so checkpoints and resume
// are unchanged.
import * as tf from '@tensorflow/tfjs-core';
import * as os from 'node:os';
import { Worker } from 'node:worker_threads';
import { backendReport } from '../backend.js';
import type { DigptBatch } from '../models/pretrain-model.js';
import type { PretrainModel } from '../models/pretrain-model.js';
import type { AdamW } from '../optim/adamw.js';
import type { PretrainStepMetrics } from '../train/pretrain.js';
import {
  CTRL,
  layoutFor,
  readText,
  sharedBytes,
  views,
  type SharedLayout,
  type SharedViews,
} from './shared.js';

/** Where the last step's time went (ms; summed over its micro-batches). */
export interface StepPhases {
  /** This thread: copying its weights out for the replica. */
  handoff: number;
  /** This thread: forward + backward of its share. */
  local: number;
  /** This thread: waiting for the replica after its own share. */
  wait: number;
  /** This thread: mixing the two gradients. */
  mix: number;
  /** This thread: AdamW. */
  adam: number;
  /** The replica: loading weights, forward + backward, writing its gradients. */
  replicaLoad: number;
  replicaCompute: number;
  replicaWrite: number;
}

/** How long a step waits for the replica's half before it fails the step (a half takes seconds, not minutes). */
const REPLICA_TIMEOUT_MS = 10 * 60_000;

export class DataParallel {
  /** Phase times of the last step. */
  lastPhases: StepPhases | undefined;

  private constructor(
    private readonly worker: Worker,
    private readonly v: SharedViews,
    private readonly layout: SharedLayout,
    private readonly offsets: number[],
    /** Set when the replica thread dies (its error, or its exit code). */
    private readonly gone: { why?: string },
  ) {}

  /** Starts a replica of `model` able to take up to `maxBatch` samples per micro-batch. */
  static async create(model: PretrainModel, maxBatch: number): Promise<DataParallel> {
    // the replica starts its own backend: tfjs-node keeps one TensorFlow per process, and a second thread that loads
    // it fails (tfjs#2079, #8388); the other backends use every core from one thread anyway
    const backend = backendReport().name;
    if (backend !== 'wasm')
      throw new Error(`two training threads run on the wasm backend only; this process uses ${backend}`);
    const params = model.params.trainable();
    const offsets: number[] = [];
    let total = 0;
    for (const p of params) {
      offsets.push(total);
      total += p.variable.size;
    }
    const layout = layoutFor(model.config, total, Math.max(1, maxBatch), model.orderLength);
    const buffer = new SharedArrayBuffer(sharedBytes(layout));
    const v = views(buffer, layout);
    // from a bundle (the desktop app's worker.js, scripts/build-main.mjs) the bundled replica beside it, else the
    // tsx boot file of the TypeScript sources
    const entry = new URL(import.meta.url).pathname.endsWith('.ts') ? './replica-boot.mjs' : './replica.js';
    const worker = new Worker(new URL(entry, import.meta.url), {
      workerData: {
        config: model.config,
        objective: model.objective,
        buffer,
        layout,
        backend: backendReport().name === 'tensorflow-gpu' ? 'tensorflow' : backendReport().tfName,
      },
    });
    const gone: { why?: string } = {};
    worker.once('error', (e) => (gone.why = e.message));
    worker.once('exit', (code) => (gone.why ??= `the replica thread exited with code ${code}`));
    // ready: the replica bumps DONE once its backend and model are up
    while (Atomics.load(v.ctrl, CTRL.DONE) === 0) {
      if (gone.why) throw new Error(`data-parallel replica failed to start: ${gone.why}`);
      await new Promise((r) => setTimeout(r, 10));
    }
    if (Atomics.load(v.ctrl, CTRL.FAILED))
      throw new Error(`data-parallel replica failed to start: ${readText(v)}`);
    return new DataParallel(worker, v, layout, offsets, gone);
  }

  /** pretrainStep, with every micro-batch shared with the replica. */
  step(model: PretrainModel, opt: AdamW, micro: (() => DigptBatch)[], lr: number): PretrainStepMetrics {
    if (this.gone.why) throw new Error(`data-parallel replica: ${this.gone.why}`);
    const v = this.v;
    const l = this.layout;
    const params = model.params.trainable();
    const ph: StepPhases = {
      handoff: 0,
      local: 0,
      wait: 0,
      mix: 0,
      adam: 0,
      replicaLoad: 0,
      replicaCompute: 0,
      replicaWrite: 0,
    };
    let tp = performance.now();
    const lap = (k: keyof StepPhases): void => {
      const now = performance.now();
      ph[k] += now - tp;
      tp = now;
    };
    // the replica starts every step from this thread's weights
    params.forEach((p, i) => v.weights.set(p.variable.dataSync() as Float32Array, this.offsets[i]));
    Atomics.add(v.ctrl, CTRL.WEIGHTS, 1);
    lap('handoff');
    const acc = new Map<string, tf.Tensor>();
    let loss = 0;
    let lossGen = 0;
    let lossDis = 0;
    let agreement = 0;
    let order: Int32Array = new Int32Array(0);
    let clusterError: Float32Array = new Float32Array(0);
    const vars = params.map((p) => p.variable);
    const byVar = new Map(params.map((p, i) => [p.variable.name, i]));
    try {
      for (let m = 0; m < micro.length; m++) {
        const batch = (micro[m] as () => DigptBatch)();
        const b = batch.images.shape[0];
        const b1 = Math.ceil(b / 2);
        const b2 = Math.min(b - b1, l.maxBatch);
        const local = b - b2;
        const doneBefore = Atomics.load(v.ctrl, CTRL.DONE);
        if (b2 > 0) {
          v.images.set(
            (batch.images.dataSync() as Float32Array).subarray(local * l.imageFloats, b * l.imageFloats),
          );
          v.teacher.set(
            (batch.teacher.dataSync() as Float32Array).subarray(local * l.teacherFloats, b * l.teacherFloats),
          );
          v.order.set(batch.order.subarray(local * l.orderInts, b * l.orderInts));
          Atomics.store(v.ctrl, CTRL.BATCH, b2);
          Atomics.store(v.ctrl, CTRL.CMD, 1);
          Atomics.add(v.ctrl, CTRL.GO, 1);
          Atomics.notify(v.ctrl, CTRL.GO);
        }
        const part = {
          images: tf.slice(batch.images, [0, 0, 0, 0], [local, -1, -1, -1]),
          teacher: tf.slice(batch.teacher, [0, 0, 0], [local, -1, -1]),
          order: batch.order.subarray(0, local * l.orderInts),
        };
        let lg = 0;
        let ld = 0;
        let ag = 0;
        const { value, grads } = tf.variableGrads(() => {
          const out = model.forward(part);
          lg = out.gen ? (out.gen.loss.dataSync()[0] as number) : 0;
          ld = out.dis ? (out.dis.loss.dataSync()[0] as number) : 0;
          const lead = out.gen ?? out.dis;
          ag = lead ? (lead.agreement.dataSync()[0] as number) : 0;
          if (m === micro.length - 1 && lead) {
            order = part.order.slice();
            clusterError = lead.clusterError.dataSync() as Float32Array;
          }
          return out.loss;
        }, vars);
        const lv = value.dataSync()[0] as number;
        value.dispose();
        tf.dispose([part.images, part.teacher, batch.images, batch.teacher]);
        lap('local');
        if (b2 > 0) {
          // the replica is working on its half meanwhile; wait for it here
          // a failing replica says so (FAILED) and bumps DONE; the worker's exit event cannot be delivered while
          // this thread blocks here, so a replica that vanished without a word is caught by the time limit
          const t0 = performance.now();
          while (Atomics.load(v.ctrl, CTRL.DONE) === doneBefore) {
            Atomics.wait(v.ctrl, CTRL.DONE, doneBefore, 1000);
            if (performance.now() - t0 > REPLICA_TIMEOUT_MS)
              throw new Error(
                `data-parallel replica: no answer in ${REPLICA_TIMEOUT_MS / 1000} s (the thread hung or died)`,
              );
          }
          if (Atomics.load(v.ctrl, CTRL.FAILED)) throw new Error(`data-parallel replica: ${readText(v)}`);
          ph.replicaLoad += v.scalars[4] ?? 0;
          ph.replicaCompute += v.scalars[5] ?? 0;
          ph.replicaWrite += v.scalars[6] ?? 0;
        }
        lap('wait');
        const wl = local / b;
        const wr = b2 / b;
        const [rl, rg, rd, ra] = [v.scalars[0] ?? 0, v.scalars[1] ?? 0, v.scalars[2] ?? 0, v.scalars[3] ?? 0];
        loss += wl * lv + (b2 > 0 ? wr * rl : 0);
        lossGen += wl * lg + (b2 > 0 ? wr * rg : 0);
        lossDis += wl * ld + (b2 > 0 ? wr * rd : 0);
        agreement += wl * ag + (b2 > 0 ? wr * ra : 0);
        for (const [vname, g] of Object.entries(grads)) {
          const i = byVar.get(vname);
          if (i === undefined) {
            g.dispose();
            continue;
          }
          const p = params[i] as (typeof params)[number];
          const off = this.offsets[i] as number;
          const mixed = tf.tidy(() => {
            const mine = tf.mul(g, wl);
            if (b2 === 0) return mine;
            const theirs = tf.tensor(v.grads.slice(off, off + p.variable.size), p.variable.shape);
            return tf.add(mine, tf.mul(theirs, wr));
          });
          g.dispose();
          const prev = acc.get(p.name);
          if (prev) {
            acc.set(
              p.name,
              tf.tidy(() => tf.add(prev, mixed)),
            );
            prev.dispose();
            mixed.dispose();
          } else acc.set(p.name, mixed);
        }
        lap('mix');
      }
      const n = micro.length;
      if (n > 1) {
        for (const [k, g] of acc) {
          acc.set(
            k,
            tf.tidy(() => tf.div(g, n)),
          );
          g.dispose();
        }
      }
      loss /= n;
      if (Number.isFinite(loss)) opt.apply(acc, lr);
      lap('adam');
      this.lastPhases = ph;
    } finally {
      for (const g of acc.values()) g.dispose();
    }
    return {
      loss,
      ...(model.objective === 'digpt' || model.objective === 'gen-only'
        ? { lossGen: lossGen / micro.length }
        : {}),
      ...(model.objective !== 'gen-only' ? { lossDis: lossDis / micro.length } : {}),
      agreement: agreement / micro.length,
      lr,
      order,
      clusterError,
    };
  }

  async close(): Promise<void> {
    Atomics.store(this.v.ctrl, CTRL.CMD, 2);
    Atomics.add(this.v.ctrl, CTRL.GO, 1);
    Atomics.notify(this.v.ctrl, CTRL.GO);
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => void this.worker.terminate().then(() => resolve()), 2000);
      this.worker.once('exit', () => {
        clearTimeout(t);
        resolve();
      });
    });
  }
}

/**
 * How many training threads `workers: 'auto'` means: 2 on the wasm backend (single-threaded under Node) when the
 * machine has 2+ cores, else 1 (tensorflow backends use every core inside each kernel; cpu is for tests only).
 */
export function autoWorkers(cores: number = os.availableParallelism()): { workers: 1 | 2; why: string } {
  const b = backendReport().name;
  if (b !== 'wasm') return { workers: 1, why: `the ${b} backend` };
  if (cores < 2) return { workers: 1, why: 'one core' };
  return { workers: 2, why: `wasm runs one thread, ${cores} cores` };
}
