// Gradients of a loss over several micro-batches, summed and averaged, without leaking tensors between them.
import * as tf from '@tensorflow/tfjs-core';

/** The parameters gradients are taken for, by name (a ParamSet's `trainable()`). */
export type GradParams = readonly { readonly name: string; readonly variable: tf.Variable }[];

export interface GradResult {
  /**
   * The micro-batch losses, [count] (kept: the caller reads it once, after queueing the update, with readMeanLoss,
   * which frees it). Nothing is read from the device here.
   */
  readonly losses: tf.Tensor1D;
  /** Mean gradient per parameter name (kept tensors: the caller disposes them). */
  readonly grads: Map<string, tf.Tensor>;
}

/** The mean of `losses` (read once, then freed), summed in JS in order as float64: the same number on every backend. */
export async function readMeanLoss(losses: tf.Tensor): Promise<number> {
  const v = await losses.data();
  losses.dispose();
  let sum = 0;
  for (const x of v) sum += x;
  return sum / v.length;
}

/**
 * The gradient of one scalar loss (built inside `loss`) with respect to `params`, by parameter name, and the loss
 * (a kept scalar: nothing is read). Only the gradients and the loss outlive the call.
 */
export function gradsOf(
  params: GradParams,
  loss: () => tf.Scalar,
): { loss: tf.Scalar; grads: Map<string, tf.Tensor> } {
  const byVar = new Map(params.map((p) => [p.variable.name, p.name]));
  const { value, grads } = tf.variableGrads(
    loss,
    params.map((p) => p.variable),
  );
  const out = new Map<string, tf.Tensor>();
  for (const [vname, g] of Object.entries(grads)) {
    const name = byVar.get(vname);
    if (name === undefined) g.dispose();
    else out.set(name, g);
  }
  return { loss: value, grads: out };
}

/**
 * A running sum of gradients by parameter name, one micro-batch (or share of one) at a time; `mean` divides once at the
 * end. Peak memory is the sum plus the gradient being added.
 */
export class GradSum {
  private readonly sums = new Map<string, tf.Tensor>();

  /** Adds `g` to the sum of `name`; takes `g` over (kept as the sum or disposed). */
  add(name: string, g: tf.Tensor): void {
    const prev = this.sums.get(name);
    if (!prev) {
      this.sums.set(name, g);
      return;
    }
    this.sums.set(
      name,
      tf.tidy(() => tf.add(prev, g)),
    );
    prev.dispose();
    g.dispose();
  }

  /** The sums divided by `count` (unchanged for 1), handed to the caller, who disposes them; the sum is left empty. */
  mean(count: number): Map<string, tf.Tensor> {
    const out = new Map(this.sums);
    this.sums.clear();
    if (count > 1) {
      for (const [k, g] of out) {
        out.set(
          k,
          tf.tidy(() => tf.div(g, count)),
        );
        g.dispose();
      }
    }
    return out;
  }

  dispose(): void {
    disposeGrads(this.sums);
  }
}

/**
 * Runs `micro` (a function of the micro-batch index returning a scalar loss, built inside) `count` times and
 * averages the gradients with respect to `params` (the losses stay on the device: readMeanLoss). Each micro-batch's activations are freed before the next one,
 * so peak memory is one micro-batch; the result equals the gradient of the mean loss when micro-batches are equal-sized.
 */
export function accumulateGrads(
  params: GradParams,
  micro: (index: number) => tf.Scalar,
  count: number,
  onMicro?: (index: number) => void,
): GradResult {
  const sum = new GradSum();
  const losses: tf.Scalar[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const { loss, grads } = gradsOf(params, () => micro(i));
      losses.push(loss);
      for (const [name, g] of grads) sum.add(name, g);
      onMicro?.(i);
    }
    return { losses: tf.stack(losses) as tf.Tensor1D, grads: sum.mean(count) };
  } finally {
    tf.dispose(losses);
    sum.dispose();
  }
}

export function disposeGrads(g: Map<string, tf.Tensor>): void {
  for (const t of g.values()) t.dispose();
  g.clear();
}
