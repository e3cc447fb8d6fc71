// How every pretraining objective scores predictions against the teacher: a bilinear map onto the teacher's token grid, 2 - 2cos.
import * as tf from '@tensorflow/tfjs-core';
import { constLeft } from '../ops/nn.js';
import { bilinearMatrix } from './geometry.js';

type T2 = tf.Tensor2D;

/**
 * Bilinear resize (PyTorch align_corners=False) of `from` x `from` token maps to `to` x `to`, as ONE plain product with
 * the constant kron(Wy, Wx) [to*to, from*from]; identity when from == to. kd and mae resize the whole patch grid to
 * the teacher's, D-iGPT each cluster's tokens to the teacher tokens of that cluster.
 */
export class GridResize {
  readonly from: number;
  readonly to: number;
  private readonly m: Float32Array | null;
  private readonly r: T2 | null;
  private readonly rT: T2 | null;

  constructor(from: number, to: number) {
    this.from = from;
    this.to = to;
    if (from === to) {
      this.m = null;
      this.r = null;
      this.rT = null;
    } else {
      this.m = bilinearMatrix(from, to);
      this.r = tf.tensor2d(this.m, [to * to, from * from]);
      this.rT = tf.transpose(this.r);
    }
  }

  /** Maps [M, from*from, D] -> [M, to*to, D] (M maps: samples, or samples x clusters). */
  apply(x: tf.Tensor3D): tf.Tensor3D {
    if (!this.r || !this.rT) return x;
    const [b, gg, d] = x.shape;
    const tt = this.to * this.to;
    // [M, G*G, D] -> [G*G, M*D]; r @ cols -> [tg*tg, M*D] -> [M, tg*tg, D]
    const cols = tf.reshape(tf.transpose(x, [1, 0, 2]), [gg, b * d]) as T2;
    const out = constLeft(this.r, this.rT, cols);
    return tf.transpose(tf.reshape(out, [tt, b, d]), [1, 0, 2]);
  }

  /** The same map on per-sample scalar maps (plain JS): values [M*from*from] -> [M*to*to]. */
  applyValues(v: Float32Array, b: number): Float32Array {
    if (!this.m) return v;
    const gg = this.from * this.from;
    const tt = this.to * this.to;
    const out = new Float32Array(b * tt);
    for (let s = 0; s < b; s++)
      for (let o = 0; o < tt; o++) {
        let acc = 0;
        for (let i = 0; i < gg; i++) acc += (this.m[o * gg + i] as number) * (v[s * gg + i] as number);
        out[s * tt + o] = acc;
      }
    return out;
  }

  dispose(): void {
    this.r?.dispose();
    this.rT?.dispose();
  }
}

/** Row-wise cosine of p and t [R, D] -> [R] (no eps, as D-iGPT's loss), and the error 2 - 2cos per row. */
export function cosineError(p: T2, t: T2): { cos: tf.Tensor1D; err: tf.Tensor1D } {
  const pn = tf.div(p, tf.sqrt(tf.sum(tf.square(p), -1, true)));
  const tn = tf.div(t, tf.sqrt(tf.sum(tf.square(t), -1, true)));
  const cos = tf.sum(tf.mul(pn, tn), -1) as tf.Tensor1D;
  return { cos, err: tf.sub(2, tf.mul(2, cos)) };
}
