// One pretraining optimisation step (any objective): micro-batches with gradient accumulation, AdamW at the scheduled lr,
// metrics as numbers. Its core (microStep, StepSum) is also what the data-parallel trainer and its replica run.
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
 * The sums of one step over its micro-batches (gradients and metrics), then the update: the one accumulation path of the
 * single-thread and data-parallel steps.
 */
export class StepSum {
  private readonly grads = new GradSum();
  private loss = 0;
  private lossGen = 0;
  private lossDis = 0;
  private agreement = 0;
  private count = 0;
  private order: Int32Array = new Int32Array(0);
  private clusterError: Float32Array = new Float32Array(0);

  /** Adds one gradient of the current micro-batch (taken over). */
  addGrad(name: string, g: tf.Tensor): void {
    this.grads.add(name, g);
  }

  /**
   * Closes a micro-batch with its metrics. The step reports the order and errors of the last micro-batch, which passes
   * its `order` (and was run with errors).
   */
  addMetrics(m: MicroMetrics, order?: Int32Array): void {
    this.loss += m.loss;
    this.lossGen += m.lossGen;
    this.lossDis += m.lossDis;
    this.agreement += m.agreement;
    this.count += 1;
    if (order) {
      this.order = order;
      this.clusterError = m.clusterError;
    }
  }

  /**
   * Means over the micro-batches and, when the loss is finite, AdamW at `lr`; the gradients are freed either way.
   * A non-finite loss skips the update (the caller stops the run) and reports no agreement.
   */
  finish(model: PretrainModel, opt: AdamW, lr: number): PretrainStepMetrics {
    const n = this.count;
    const grads = this.grads.mean(n);
    const loss = this.loss / n;
    const { order, clusterError } = this;
    try {
      if (!Number.isFinite(loss)) return { loss, lr, agreement: NaN, order, clusterError };
      opt.apply(grads, lr);
    } finally {
      disposeGrads(grads);
    }
    return {
      loss,
      ...(model.objective === 'digpt' || model.objective === 'gen-only' ? { lossGen: this.lossGen / n } : {}),
      // kd and mae report their single head as the discriminative one
      ...(model.objective !== 'gen-only' ? { lossDis: this.lossDis / n } : {}),
      agreement: this.agreement / n,
      lr,
      order,
      clusterError,
    };
  }

  /** Frees what a failed step left summed. */
  dispose(): void {
    this.grads.dispose();
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
  const sum = new StepSum();
  try {
    micro.forEach((make, i) => {
      const batch = make();
      try {
        const last = i === micro.length - 1;
        const { grads, metrics } = microStep(model, batch, last);
        for (const [name, g] of grads) sum.addGrad(name, g);
        sum.addMetrics(metrics, last ? batch.order.slice() : undefined);
      } finally {
        // the inputs live until their backward pass is done
        batch.images.dispose();
        batch.teacher.dispose();
      }
    });
    return sum.finish(model, opt, lr);
  } finally {
    sum.dispose();
  }
}
