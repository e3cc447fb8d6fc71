// One pretraining optimisation step (any objective): micro-batches with gradient accumulation, AdamW at the scheduled lr,
// metrics as numbers. Its core (runStep, microStep) is also what the data-parallel trainer and its replica run.
import * as tf from '@tensorflow/tfjs-core';
import type { DigptBatch, DigptOutput, PretrainModel } from '../models/pretrain-model.js';
import { AdamW, type AdamWOptions, OFFICIAL_ADAMW } from '../optim/adamw.js';
import type { Rng } from '../rng.js';
import { disposeGrads, GradSum, gradsOf } from './grads.js';

/** What one step reports (plain numbers, safe to send to another thread). */
export interface PretrainStepMetrics {
  /** Total loss (gen + dis), mean over micro-batches. */
  readonly loss: number;
  readonly lossGen?: number;
  readonly lossDis?: number;
  /** Mean cosine between predictions and teacher targets (generative decoder if present). */
  readonly agreement: number;
  readonly lr: number;
  /** Order of the last micro-batch, [B*orderLength]: cluster order (D-iGPT, what the patch-order view draws), mae's patch permutation, empty for kd. */
  readonly order: Int32Array;
  /**
   * Per-cluster error (2 - 2cos) of the last micro-batch's predicting decoder, [B*(K-1)] in sequence order; for kd and
   * mae one mean error per sample, [B].
   */
  readonly clusterError: Float32Array;
}

/** What the forward of one micro-batch (or one thread's share of it) reports, as numbers. */
export interface MicroMetrics {
  /** The loss that was differentiated (gen + dis). */
  readonly loss: number;
  /** The heads' losses; 0 for a head the objective does not have. */
  readonly lossGen: number;
  readonly lossDis: number;
  /** The lead head's (generative decoder if present) mean cosine with the teacher. */
  readonly agreement: number;
  /** The lead head's per-cluster (kd, mae: per-sample) error, when asked for; else empty. */
  readonly clusterError: Float32Array;
}

/** Draws a fresh cluster order per sample from the run's generator. */
export function drawOrders(rng: Rng, batch: number, k: number): Int32Array {
  const out = new Int32Array(batch * k);
  for (let b = 0; b < batch; b++) out.set(rng.permutation(k), b * k);
  return out;
}

/** Builds the AdamW of a D-iGPT model with the official decay groups. */
export function digptOptimizer(model: PretrainModel, options: AdamWOptions = OFFICIAL_ADAMW): AdamW {
  return new AdamW(
    model.params.trainable().map((p) => ({ name: p.name, variable: p.variable, decay: p.spec.decay })),
    options,
  );
}

/**
 * What the forward of a micro-batch leaves on the device: its numbers as one kept tensor,
 * [loss, lossGen, lossDis, agreement, ...clusterError], read by the step (with every other micro-batch's, once) after
 * the update is queued; `finish` turns the values read into MicroMetrics.
 */
export interface PendingMetrics {
  readonly packed: tf.Tensor1D;
  readonly finish: (values: Float32Array) => MicroMetrics;
}

/** The numbers of a micro-batch as one tensor (see PendingMetrics); nothing is read. */
function packMetrics(loss: tf.Scalar, out: DigptOutput, withErrors: boolean): tf.Tensor1D {
  const lead = out.gen ?? out.dis;
  return tf.tidy(() => {
    const zero = tf.zeros([1]);
    const one = (t: tf.Tensor | undefined): tf.Tensor => (t ? tf.reshape(t, [1]) : zero);
    const parts = [one(loss), one(out.gen?.loss), one(out.dis?.loss), one(lead?.agreement)];
    if (withErrors && lead) parts.push(tf.reshape(lead.clusterError, [-1]));
    return tf.concat(parts) as tf.Tensor1D;
  });
}

/** MicroMetrics of values packed by packMetrics. */
export function unpackMetrics(v: Float32Array): MicroMetrics {
  return {
    loss: v[0] as number,
    lossGen: v[1] as number,
    lossDis: v[2] as number,
    agreement: v[3] as number,
    clusterError: v.slice(4),
  };
}

/**
 * Forward and backward of one micro-batch: its gradients by parameter name (the caller disposes them) and its numbers
 * as one kept tensor (packMetrics; the caller reads and frees it). The single-thread step, the data-parallel trainer
 * (its share) and the replica (the other share) all run this.
 */
export function microStep(
  model: PretrainModel,
  batch: DigptBatch,
  withErrors: boolean,
): { grads: Map<string, tf.Tensor>; packed: tf.Tensor1D } {
  let packed: tf.Tensor1D | undefined;
  const { loss, grads } = gradsOf(model.params.trainable(), () => {
    const out = model.forward(batch);
    // kept past variableGrads' tidy: tf.keep
    packed = tf.keep(packMetrics(out.loss, out, withErrors));
    return out.loss;
  });
  loss.dispose();
  return { grads, packed: packed as tf.Tensor1D };
}

/**
 * How a step computes one micro-batch: its gradients go to `addGrad` (which takes them over), its numbers stay on the
 * device until the step reads them. The single thread runs microStep on the whole micro-batch; the data-parallel
 * trainer shares it with its replica.
 */
export type MicroRunner = (
  batch: DigptBatch,
  withErrors: boolean,
  addGrad: (name: string, g: tf.Tensor) => void,
) => Promise<PendingMetrics>;

/** What a step may read besides its own numbers, in the same single read. */
export interface StepReads {
  /**
   * Scalars the micro-batch builders push while the step runs (e.g. the teacher's finiteness, sum(x * 0)); the step
   * frees them and returns their values as `guards`, in order.
   */
  readonly guards?: tf.Tensor[];
}

/**
 * The step core, the one accumulation path: builds the micro-batches one at a time (the caller owns what `micro`
 * returns; it is disposed here after use), runs each, sums gradients, queues AdamW at `lr` on the mean gradient, and
 * only then reads every micro-batch's numbers (and `reads.guards`) as ONE tensor: on a GPU the host encodes the update
 * while the device still runs the backward pass, and waits once. Metrics are summed in JS in micro-batch order, so the
 * numbers equal those of reading each micro-batch at once. A non-finite mean loss reports no agreement (NaN) and the
 * caller stops the run: the update has been applied with it (nothing is read before it), and the run never saves
 * that state (a checkpoint refuses non-finite weights). The step reports the last micro-batch's order and per-cluster
 * errors.
 */
export async function runStep(
  model: PretrainModel,
  opt: AdamW,
  micro: (() => DigptBatch)[],
  lr: number,
  run: MicroRunner,
  reads: StepReads = {},
): Promise<PretrainStepMetrics & { readonly guards: Float32Array }> {
  const sum = new GradSum();
  const pending: PendingMetrics[] = [];
  let order: Int32Array = new Int32Array(0);
  try {
    for (let i = 0; i < micro.length; i++) {
      const batch = (micro[i] as () => DigptBatch)();
      const last = i === micro.length - 1;
      try {
        pending.push(await run(batch, last, (name, g) => sum.add(name, g)));
        if (last) order = batch.order.slice();
      } finally {
        // the inputs live until their backward pass is done
        batch.images.dispose();
        batch.teacher.dispose();
      }
    }
    const n = micro.length;
    const grads = sum.mean(n);
    try {
      opt.apply(grads, lr);
    } finally {
      disposeGrads(grads);
    }
    const guards = reads.guards ?? [];
    const all = tf.tidy(() =>
      tf.concat([...pending.map((p) => p.packed), ...guards.map((g) => tf.reshape(g, [-1]))]),
    );
    let values: Float32Array;
    try {
      values = (await all.data()) as Float32Array;
    } finally {
      all.dispose();
    }
    const total = { loss: 0, lossGen: 0, lossDis: 0, agreement: 0 };
    let clusterError: Float32Array = new Float32Array(0);
    let at = 0;
    pending.forEach((p, i) => {
      const m = p.finish(values.subarray(at, at + (p.packed.size as number)));
      at += p.packed.size;
      total.loss += m.loss;
      total.lossGen += m.lossGen;
      total.lossDis += m.lossDis;
      total.agreement += m.agreement;
      if (i === pending.length - 1) clusterError = m.clusterError;
    });
    const guardValues = values.slice(at);
    const loss = total.loss / n;
    if (!Number.isFinite(loss)) return { loss, lr, agreement: NaN, order, clusterError, guards: guardValues };
    return {
      loss,
      ...(model.objective === 'digpt' || model.objective === 'gen-only'
        ? { lossGen: total.lossGen / n }
        : {}),
      // kd and mae report their single head as the discriminative one
      ...(model.objective !== 'gen-only' ? { lossDis: total.lossDis / n } : {}),
      agreement: total.agreement / n,
      lr,
      order,
      clusterError,
      guards: guardValues,
    };
  } finally {
    tf.dispose(pending.map((p) => p.packed));
    tf.dispose(reads.guards ?? []);
    sum.dispose();
  }
}

/**
 * One optimisation step over `micro.length` micro-batches (each built lazily by the caller, so only one is in memory).
 * The caller owns the batch tensors that `micro` returns; they are disposed here after use.
 */
export function pretrainStep(
  model: PretrainModel,
  opt: AdamW,
  micro: (() => DigptBatch)[],
  lr: number,
  reads: StepReads = {},
): Promise<PretrainStepMetrics & { readonly guards: Float32Array }> {
  return runStep(
    model,
    opt,
    micro,
    lr,
    (batch, withErrors, addGrad) => {
      const { grads, packed } = microStep(model, batch, withErrors);
      for (const [name, g] of grads) addGrad(name, g);
      return Promise.resolve({ packed, finish: unpackMetrics });
    },
    reads,
  );
}
