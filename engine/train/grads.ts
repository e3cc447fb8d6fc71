// Gradients of a loss over several micro-batches, summed and averaged, without leaking tensors between them.
import * as tf from '@tensorflow/tfjs-core';

export interface GradResult {
  /** Mean of the micro-batch losses. */
  readonly loss: number;
  /** Mean gradient per parameter name (kept tensors: the caller disposes them). */
  readonly grads: Map<string, tf.Tensor>;
}

/**
 * Runs `micro` (a function of the micro-batch index returning a scalar loss, built inside) `count` times and
 * averages the gradients with respect to `params`. Each micro-batch's activations are freed before the next one,
 * so peak memory is one micro-batch; the result equals the gradient of the mean loss when micro-batches are equal-sized.
 */
export function accumulateGrads(
  params: readonly { readonly name: string; readonly variable: tf.Variable }[],
  micro: (index: number) => tf.Scalar,
  count: number,
  onMicro?: (index: number) => void,
): GradResult {
  const byVar = new Map(params.map((p) => [p.variable.name, p.name]));
  const vars = params.map((p) => p.variable);
  const acc = new Map<string, tf.Tensor>();
  let lossSum = 0;
  for (let i = 0; i < count; i++) {
    const { value, grads } = tf.variableGrads(() => micro(i), vars);
    lossSum += value.dataSync()[0] as number;
    value.dispose();
    for (const [vname, g] of Object.entries(grads)) {
      const name = byVar.get(vname);
      if (name === undefined) {
        g.dispose();
        continue;
      }
      const prev = acc.get(name);
      if (prev) {
        acc.set(
          name,
          tf.tidy(() => tf.add(prev, g)),
        );
        prev.dispose();
        g.dispose();
      } else acc.set(name, g);
    }
    onMicro?.(i);
  }
  if (count > 1) {
    for (const [k, g] of acc) {
      acc.set(
        k,
        tf.tidy(() => tf.div(g, count)),
      );
      g.dispose();
    }
  }
  return { loss: lossSum / count, grads: acc };
}

export function disposeGrads(g: Map<string, tf.Tensor>): void {
  for (const t of g.values()) t.dispose();
  g.clear();
}
