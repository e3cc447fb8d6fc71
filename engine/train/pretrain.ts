// One pretraining optimisation step (any objective): micro-batches with gradient accumulation, AdamW at the scheduled lr,
// metrics as numbers. Its core (runStep, microStep) is also what the data-parallel trainer and its replica run.
import type * as tf from '@tensorflow/tfjs-core';
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

/** The numbers a step reports, read from a forward pass; the loss is read by gradsOf. */
function readMetrics(out: DigptOutput, withErrors: boolean): Omit<MicroMetrics, 'loss'> {
  const lead = out.gen ?? out.dis;
  return {
    lossGen: out.gen ? (out.gen.loss.dataSync()[0] as number) : 0,
    lossDis: out.dis ? (out.dis.loss.dataSync()[0] as number) : 0,
    agreement: lead ? (lead.agreement.dataSync()[0] as number) : 0,
    clusterError: withErrors && lead ? (lead.clusterError.dataSync() as Float32Array) : new Float32Array(0),
  };
}

/**
 * Forward and backward of one micro-batch: its gradients by parameter name (the caller disposes them) and its metrics.
 * The single-thread step, the data-parallel trainer (its share) and the replica (the other share) all run this.
 */
export function microStep(
  model: PretrainModel,
  batch: DigptBatch,
  withErrors: boolean,
): { grads: Map<string, tf.Tensor>; metrics: MicroMetrics } {
  let parts: Omit<MicroMetrics, 'loss'> | undefined;
  const { loss, grads } = gradsOf(model.params.trainable(), () => {
    const out = model.forward(batch);
    parts = readMetrics(out, withErrors);
    return out.loss;
  });
  return { grads, metrics: { loss, ...(parts as Omit<MicroMetrics, 'loss'>) } };
}

/**
 * How a step computes one micro-batch: its gradients go to `addGrad` (which takes them over), its metrics are returned.
 * The single thread runs microStep on the whole micro-batch; the data-parallel trainer shares it with its replica.
 */
export type MicroRunner = (
  batch: DigptBatch,
  withErrors: boolean,
  addGrad: (name: string, g: tf.Tensor) => void,
) => MicroMetrics;

/**
 * The step core, the one accumulation path: builds the micro-batches one at a time (the caller owns what `micro`
 * returns; it is disposed here after use), runs each, sums gradients and metrics, and applies AdamW at `lr` to the
 * mean gradient when the mean loss is finite; a non-finite loss skips the update (the caller stops the run) and reports
 * no agreement. The step reports the last micro-batch's order and per-cluster errors.
 */
export function runStep(
  model: PretrainModel,
  opt: AdamW,
  micro: (() => DigptBatch)[],
  lr: number,
  run: MicroRunner,
): PretrainStepMetrics {
  const sum = new GradSum();
  const total = { loss: 0, lossGen: 0, lossDis: 0, agreement: 0 };
  let order: Int32Array = new Int32Array(0);
  let clusterError: Float32Array = new Float32Array(0);
  try {
    micro.forEach((make, i) => {
      const batch = make();
      const last = i === micro.length - 1;
      try {
        const m = run(batch, last, (name, g) => sum.add(name, g));
        total.loss += m.loss;
        total.lossGen += m.lossGen;
        total.lossDis += m.lossDis;
        total.agreement += m.agreement;
        if (last) [order, clusterError] = [batch.order.slice(), m.clusterError];
      } finally {
        // the inputs live until their backward pass is done
        batch.images.dispose();
        batch.teacher.dispose();
      }
    });
    const n = micro.length;
    const grads = sum.mean(n);
    const loss = total.loss / n;
    try {
      if (!Number.isFinite(loss)) return { loss, lr, agreement: NaN, order, clusterError };
      opt.apply(grads, lr);
    } finally {
      disposeGrads(grads);
    }
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
    };
  } finally {
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
): PretrainStepMetrics {
  return runStep(model, opt, micro, lr, (batch, withErrors, addGrad) => {
    const { grads, metrics } = microStep(model, batch, withErrors);
    for (const [name, g] of grads) addGrad(name, g);
    return metrics;
  });
}
