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
import type { DigptBatch, PretrainModel } from '../models/pretrain-model.js';
import type { AdamW } from '../optim/adamw.js';
import { disposeGrads } from '../train/grads.js';
import {
  microStep,
  runStep,
  unpackMetrics,
  type MicroMetrics,
  type PendingMetrics,
  type PretrainStepMetrics,
  type StepReads,
} from '../train/pretrain.js';
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

/** Adds the time since the last lap to a phase. */
class PhaseClock {
  readonly phases: StepPhases = {
    handoff: 0,
    local: 0,
    wait: 0,
    mix: 0,
    adam: 0,
    replicaLoad: 0,
    replicaCompute: 0,
    replicaWrite: 0,
  };
  private last = performance.now();

  lap(phase: keyof StepPhases): void {
    const now = performance.now();
    this.phases[phase] += now - this.last;
    this.last = now;
  }
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
    const layout = layoutFor(
      model.config,
      total,
      Math.max(1, maxBatch),
      model.orderLength,
      model.errorLength,
    );
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

  /**
   * pretrainStep, with every micro-batch shared with the replica: the same step core (runStep), whose micro-batches are
   * split between this thread and the replica (both run microStep on their share) and mixed by share size.
   */
  async step(
    model: PretrainModel,
    opt: AdamW,
    micro: (() => DigptBatch)[],
    lr: number,
    reads: StepReads = {},
  ): Promise<PretrainStepMetrics & { readonly guards: Float32Array }> {
    if (this.gone.why) throw new Error(`data-parallel replica: ${this.gone.why}`);
    const clock = new PhaseClock();
    // the replica starts every step from this thread's weights
    const params = model.params.trainable();
    const weights = await Promise.all(params.map((p) => p.variable.data()));
    weights.forEach((w, i) => this.v.weights.set(w as Float32Array, this.offsets[i]));
    Atomics.add(this.v.ctrl, CTRL.WEIGHTS, 1);
    clock.lap('handoff');
    const out = await runStep(
      model,
      opt,
      micro,
      lr,
      (batch, withErrors, addGrad) => this.shared(model, batch, withErrors, addGrad, clock),
      reads,
    );
    clock.lap('adam');
    this.lastPhases = clock.phases;
    return out;
  }

  /** One micro-batch: the replica's share sent off, this thread's computed, the two mixed by share size. */
  private async shared(
    model: PretrainModel,
    batch: DigptBatch,
    withErrors: boolean,
    addGrad: (name: string, g: tf.Tensor) => void,
    clock: PhaseClock,
  ): Promise<PendingMetrics> {
    const v = this.v;
    const l = this.layout;
    const b = batch.images.shape[0];
    const b1 = Math.ceil(b / 2);
    const b2 = Math.min(b - b1, l.maxBatch);
    const local = b - b2;
    const doneBefore = Atomics.load(v.ctrl, CTRL.DONE);
    if (b2 > 0) {
      const [images, teacher] = (await Promise.all([batch.images.data(), batch.teacher.data()])) as [
        Float32Array,
        Float32Array,
      ];
      v.images.set(images.subarray(local * l.imageFloats, b * l.imageFloats));
      v.teacher.set(teacher.subarray(local * l.teacherFloats, b * l.teacherFloats));
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
    let mine: ReturnType<typeof microStep>;
    try {
      mine = microStep(model, part, withErrors);
    } finally {
      // freed before the wait (the step core's own dispose of the batch is then a no-op)
      tf.dispose([part.images, part.teacher, batch.images, batch.teacher]);
    }
    clock.lap('local');
    try {
      if (b2 > 0) this.awaitReplica(doneBefore, clock.phases);
    } catch (e) {
      disposeGrads(mine.grads);
      mine.packed.dispose();
      throw e;
    }
    clock.lap('wait');
    const wl = local / b;
    const wr = b2 / b;
    const params = model.params.trainable();
    const byName = new Map(params.map((p, i) => [p.name, i]));
    for (const [name, g] of mine.grads) {
      const i = byName.get(name);
      if (i === undefined) {
        g.dispose();
        continue;
      }
      const p = params[i] as (typeof params)[number];
      const off = this.offsets[i] as number;
      const mixed = tf.tidy(() => {
        const own = tf.mul(g, wl);
        if (b2 === 0) return own;
        const theirs = tf.tensor(v.grads.slice(off, off + p.variable.size), p.variable.shape);
        return tf.add(own, tf.mul(theirs, wr));
      });
      g.dispose();
      addGrad(name, mixed);
    }
    // the replica's numbers are in shared memory now; this thread's are read with the step's
    const theirs = this.replicaMetrics(b2 > 0, withErrors);
    clock.lap('mix');
    return {
      packed: mine.packed,
      finish: (values) => this.mixMetrics(unpackMetrics(values), wl, b2 > 0 ? wr : 0, withErrors, theirs),
    };
  }

  /** Waits for the replica's share of a micro-batch (DONE moving past `doneBefore`); fails the step if it failed. */
  private awaitReplica(doneBefore: number, ph: StepPhases): void {
    const v = this.v;
    // a failing replica says so (FAILED) and bumps DONE; the worker's exit event cannot be delivered while this
    // thread blocks here, so a replica that vanished without a word is caught by the time limit
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

  /**
   * The micro-batch's metrics: this thread's weighted by its share `wl`, plus the replica's (in shared memory) by `wr`
   * (0: the replica had no share); with `errors`, this thread's per-cluster errors followed by the replica's.
   */
  /** The replica's numbers of the micro-batch just computed (copied out of shared memory, which the next one reuses). */
  private replicaMetrics(
    ran: boolean,
    errors: boolean,
  ): { scalars: [number, number, number, number]; errors: Float32Array } {
    const s = this.v.scalars;
    return {
      scalars: [s[0] ?? 0, s[1] ?? 0, s[2] ?? 0, s[3] ?? 0],
      errors:
        ran && errors ? this.v.errors.slice(0, Atomics.load(this.v.ctrl, CTRL.ERRORS)) : new Float32Array(0),
    };
  }

  private mixMetrics(
    mine: MicroMetrics,
    wl: number,
    wr: number,
    errors: boolean,
    replica: { scalars: [number, number, number, number]; errors: Float32Array },
  ): MicroMetrics {
    const [rl, rg, rd, ra] = replica.scalars;
    const theirs = wr > 0 ? replica.errors : new Float32Array(0);
    const clusterError = new Float32Array(errors ? mine.clusterError.length + theirs.length : 0);
    if (errors) {
      clusterError.set(mine.clusterError);
      clusterError.set(theirs, mine.clusterError.length);
    }
    return {
      loss: wl * mine.loss + (wr > 0 ? wr * rl : 0),
      lossGen: wl * mine.lossGen + (wr > 0 ? wr * rg : 0),
      lossDis: wl * mine.lossDis + (wr > 0 ? wr * rd : 0),
      agreement: wl * mine.agreement + (wr > 0 ? wr * ra : 0),
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
