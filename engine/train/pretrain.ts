// One D-iGPT optimisation step: micro-batches with gradient accumulation, AdamW at the scheduled lr, metrics as numbers.
import type { DigptBatch } from '../models/pretrain-model.js';
import type { PretrainModel } from '../models/pretrain-model.js';
import { AdamW, type AdamWOptions, OFFICIAL_ADAMW } from '../optim/adamw.js';
import type { Rng } from '../rng.js';
import { accumulateGrads, disposeGrads } from './grads.js';

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
 * One optimisation step over `micro.length` micro-batches (each built lazily by the caller, so only one is in memory).
 * The caller owns the batch tensors that `micro` returns; they are disposed here after use.
 */
export function pretrainStep(
  model: PretrainModel,
  opt: AdamW,
  micro: (() => DigptBatch)[],
  lr: number,
): PretrainStepMetrics {
  let lossGen = 0;
  let lossDis = 0;
  let agreement = 0;
  let order: Int32Array = new Int32Array(0);
  let clusterError: Float32Array = new Float32Array(0);
  const trainable = model.params.trainable();
  let current: DigptBatch | undefined;
  const release = (): void => {
    current?.images.dispose();
    current?.teacher.dispose();
    current = undefined;
  };
  const { loss, grads } = accumulateGrads(
    trainable,
    (i) => {
      const batch = (micro[i] as () => DigptBatch)();
      current = batch;
      {
        const out = model.forward(batch);
        lossGen += out.gen ? (out.gen.loss.dataSync()[0] as number) : 0;
        lossDis += out.dis ? (out.dis.loss.dataSync()[0] as number) : 0;
        const lead = out.gen ?? out.dis;
        agreement += lead ? (lead.agreement.dataSync()[0] as number) : 0;
        if (i === micro.length - 1 && lead) {
          order = batch.order.slice();
          clusterError = lead.clusterError.dataSync() as Float32Array;
        }
        return out.loss;
      }
    },
    micro.length,
    // the inputs live until their backward pass is done
    release,
  );
  try {
    if (!Number.isFinite(loss)) return { loss, lr, agreement: NaN, order, clusterError };
    opt.apply(grads, lr);
  } finally {
    disposeGrads(grads);
  }
  const n = micro.length;
  return {
    loss,
    ...(model.objective === 'digpt' || model.objective === 'gen-only' ? { lossGen: lossGen / n } : {}),
    // kd and mae report their single head as the discriminative one
    ...(model.objective !== 'gen-only' ? { lossDis: lossDis / n } : {}),
    agreement: agreement / n,
    lr,
    order,
    clusterError,
  };
}
