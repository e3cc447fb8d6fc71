// Neural-network primitives with hand-written gradients, fast on every backend.
//
// On tfjs-backend-wasm every product (transposed, batched or plain) runs on the engine's own GEMM
// (`ops/wasm_gemm.ts`, registered by `useFastWasmKernels`), so the backward passes use transpose flags and batched
// products directly. The hand-written gradients remain because they keep intermediates off tfjs's tape (it holds
// every recorded tensor until the backward pass ends) and issue fewer kernels than autodiff.
// On webgpu the same hand-written gradients run on the engine's fused programs (`ops/webgpu_kernels.ts`: LayerNorm,
// GELU, softmax backward, leading-axis sums), which cut the dispatches per step by more than half.
// On backends without the engine's GEMM (tensorflow, cpu) the native batched products are used.
import * as tf from '@tensorflow/tfjs-core';
import { needsPlainMatMul as wasmLike } from '../backend.js';
import { GELU_GRAD_KERNEL, GELU_KERNEL, useFastWasmKernels } from './wasm_kernels.js';
import {
  ATTENTION_KERNEL,
  attentionFits,
  GPU_GELU_GRAD_KERNEL,
  GPU_GELU_KERNEL,
  LAYER_NORM_GRAD_KERNEL,
  LAYER_NORM_KERNEL,
  SOFTMAX_GRAD_KERNEL,
  onWebGpu,
} from './webgpu_kernels.js';

type T2 = tf.Tensor2D;
type T3 = tf.Tensor3D;

/** True on wasm; also puts the engine's wasm kernels (GEMM, slicing) in place. */
function needsPlainMatMul(): boolean {
  if (!wasmLike()) return false;
  useFastWasmKernels();
  return true;
}

/** A differentiable function of tensors with a hand-written backward (a typed front to tf.customGrad). */
function custom(
  f: (
    inputs: tf.Tensor[],
    save: (ts: tf.Tensor[]) => void,
  ) => { value: tf.Tensor; gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => tf.Tensor[] },
): (...xs: tf.Tensor[]) => tf.Tensor {
  const g = tf.customGrad(((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const save = args[args.length - 1] as tf.GradSaveFunc;
    const { value, gradFunc } = f(args.slice(0, -1) as tf.Tensor[], save);
    // tfjs runs a custom gradient outside any tidy, so its temporaries would live until the whole backward pass ends
    return { value, gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => tf.tidy(() => gradFunc(dy, saved)) };
  }) as Parameters<typeof tf.customGrad>[0]);
  return (...xs: tf.Tensor[]) => g(...xs);
}

/** a @ b for 2-D tensors. */
function mm(a: tf.Tensor, b: tf.Tensor): T2 {
  return tf.matMul(a as T2, b as T2);
}

/** The parameter gradients of y = x @ W (+ b) for x [M, in], dy [M, out]: [dW] or [dW, db]. */
function paramGrads(x: T2, dy: T2, bias: boolean): tf.Tensor[] {
  const dw = tf.matMul(x, dy, true, false);
  return bias ? [dw, tf.sum(dy, 0)] : [dw];
}

/** True where the engine's own kernels are in place: wasm or webgpu. */
function engineKernels(): boolean {
  return needsPlainMatMul() || onWebGpu();
}

/** x [M, in] @ w [in, out] (+ b [out]); the weight is kept in tfjs's [in, out] layout. */
export function linear(x: T2, w: T2, b?: tf.Tensor1D): T2 {
  if (!engineKernels()) return b ? tf.add(tf.matMul(x, w), b) : tf.matMul(x, w);
  if (b) {
    const f = custom(([xx, ww, bb], save) => {
      save([xx as T2, ww as T2]);
      const value = tf.fused.matMul({ a: xx as T2, b: ww as T2, bias: bb as tf.Tensor1D });
      return {
        value,
        gradFunc: (dy, saved) => {
          const [sx, sw] = saved as [T2, T2];
          const d = dy as T2;
          return [tf.matMul(d, sw, false, true), ...paramGrads(sx, d, true)];
        },
      };
    });
    return f(x, w, b) as T2;
  }
  const f = custom(([xx, ww], save) => {
    save([xx as T2, ww as T2]);
    return {
      value: mm(xx as T2, ww as T2),
      gradFunc: (dy, saved) => {
        const [sx, sw] = saved as [T2, T2];
        const d = dy as T2;
        return [tf.matMul(d, sw, false, true), ...paramGrads(sx, d, false)];
      },
    };
  });
  return f(x, w) as T2;
}

/** a [n, M, K] @ b [n, K, N] -> [n, M, N]. */
export function bmm(a: T3, b: T3): T3 {
  if (needsPlainMatMul()) {
    const f = custom(([aa, bb], save) => {
      save([aa as T3, bb as T3]);
      return {
        value: tf.matMul(aa as T3, bb as T3),
        gradFunc: (dy, saved) => {
          const [sa, sb] = saved as [T3, T3];
          return [tf.matMul(dy as T3, sb, false, true), tf.matMul(sa, dy as T3, true, false)];
        },
      };
    });
    return f(a, b) as T3;
  }
  return tf.matMul(a, b);
}

/** A constant linear map applied on the left: r [P, Q] @ x [Q, M]; its gradient is rT @ dy (rT built once). */
export function constLeft(r: T2, rT: T2, x: T2): T2 {
  const f = custom(([xx]) => ({ value: mm(r, xx as T2), gradFunc: (dy) => [mm(rT, dy)] }));
  return f(x) as T2;
}

/** LayerNorm over the last axis of x [M, C]: analytic backward, fewer kernels than autodiff through moments. */
export function layerNorm(x: T2, gamma: tf.Tensor1D, beta: tf.Tensor1D, eps: number): T2 {
  if (onWebGpu() && x.dtype === 'float32') {
    // webgpu: statistics and output forward, dx, d(gamma) and d(beta) backward, one dispatch each
    const g = custom(([xx, gg, bb], save) => {
      const [y, stats] = tf
        .engine()
        .runKernel(
          LAYER_NORM_KERNEL,
          { x: xx as tf.Tensor, gamma: gg as tf.Tensor, beta: bb as tf.Tensor },
          { eps },
        ) as tf.Tensor[];
      save([xx as tf.Tensor, stats as tf.Tensor, gg as tf.Tensor]);
      return {
        value: y as tf.Tensor,
        gradFunc: (dy, saved) =>
          tf.engine().runKernel(LAYER_NORM_GRAD_KERNEL, {
            dy,
            x: saved[0] as tf.Tensor,
            stats: saved[1] as tf.Tensor,
            gamma: saved[2] as tf.Tensor,
          }) as tf.Tensor[],
      };
    });
    return g(x, gamma, beta) as T2;
  }
  const f = custom(([xx, g, b], save) => {
    const x0 = xx as tf.Tensor;
    const mean = tf.mean(x0, -1, true);
    const xc = tf.sub(x0, mean);
    const variance = tf.mean(tf.square(xc), -1, true);
    const rstd = tf.rsqrt(tf.add(variance, eps));
    const xhat = tf.mul(xc, rstd);
    save([xhat, rstd, g as tf.Tensor]);
    return {
      value: tf.add(tf.mul(xhat, g as tf.Tensor), b as tf.Tensor),
      gradFunc: (dy, saved) => {
        const [sxhat, srstd, sg] = saved as [T2, T2, tf.Tensor1D];
        const dxhat = tf.mul(dy, sg);
        const m1 = tf.mean(dxhat, -1, true);
        const m2 = tf.mean(tf.mul(dxhat, sxhat), -1, true);
        const dx = tf.mul(srstd, tf.sub(tf.sub(dxhat, m1), tf.mul(sxhat, m2)));
        return [dx, tf.sum(tf.mul(dy, sxhat), 0), tf.sum(dy, 0)];
      },
    };
  });
  return f(x, gamma, beta) as T2;
}

const SQRT1_2 = Math.SQRT1_2;
const INV_SQRT_2PI = 1 / Math.sqrt(2 * Math.PI);

/**
 * exp(-x^2 / 2). On wasm as elu(-x^2 / 2) + 1 (elu(y) = e^y - 1 for y <= 0): tfjs-wasm's Elu is XNNPACK's vectorised
 * kernel, its Exp a scalar loop ~8x slower; the sum's rounding (~6e-8 absolute) is below the float32 error of erf.
 */
function gaussian(x: tf.Tensor): tf.Tensor {
  const y = tf.mul(tf.square(x), -0.5);
  return needsPlainMatMul() ? tf.add(tf.elu(y), 1) : tf.exp(y);
}

/** Exact GELU, x * Phi(x), as PyTorch's nn.GELU() (erf form). */
export function gelu(x: tf.Tensor): tf.Tensor {
  if (onWebGpu() && x.dtype === 'float32') {
    // webgpu: one dispatch each way; the backward recomputes the cdf from x
    const g = custom(([xx], save) => {
      save([xx as tf.Tensor]);
      return {
        value: tf.engine().runKernel(GPU_GELU_KERNEL, { x: xx as tf.Tensor }) as tf.Tensor,
        gradFunc: (dy, saved) => [
          tf.engine().runKernel(GPU_GELU_GRAD_KERNEL, { dy, x: saved[0] as tf.Tensor }) as tf.Tensor,
        ],
      };
    });
    return g(x);
  }
  if (needsPlainMatMul() && x.dtype === 'float32') {
    // wasm: forward and backward are one vectorised pass each in the engine's wasm module
    const g = custom(([xx], save) => {
      const [y, cdf] = tf.engine().runKernel(GELU_KERNEL, { x: xx as tf.Tensor }) as tf.Tensor[];
      save([xx as tf.Tensor, cdf as tf.Tensor]);
      return {
        value: y as tf.Tensor,
        gradFunc: (dy, saved) => [
          tf.engine().runKernel(GELU_GRAD_KERNEL, {
            dy,
            x: saved[0] as tf.Tensor,
            cdf: saved[1] as tf.Tensor,
          }) as tf.Tensor,
        ],
      };
    });
    return g(x);
  }
  const f = custom(([xx], save) => {
    const x0 = xx as tf.Tensor;
    const cdf = tf.mul(0.5, tf.add(1, tf.erf(tf.mul(x0, SQRT1_2))));
    save([x0, cdf]);
    return {
      value: tf.mul(x0, cdf),
      gradFunc: (dy, saved) => {
        const [sx, scdf] = saved as [tf.Tensor, tf.Tensor];
        return [tf.mul(dy, tf.add(scdf, tf.mul(tf.mul(sx, INV_SQRT_2PI), gaussian(sx))))];
      },
    };
  });
  return f(x);
}

/** CLIP's QuickGELU, x * sigmoid(1.702 x) (OpenAI weights). */
export function quickGelu(x: tf.Tensor): tf.Tensor {
  return tf.mul(x, tf.sigmoid(tf.mul(x, 1.702)));
}

/**
 * Rows of x [R, C] reordered by a permutation `perm` of 0..R-1 (out[i] = x[perm[i]]). The backward is the gather by
 * the inverse permutation, so no scatter kernel is needed (wasm has none).
 */
export function permuteRows(x: T2, perm: tf.Tensor1D, inverse: tf.Tensor1D): T2 {
  const f = custom(([xx], save) => {
    // the index tensor is saved so the tape keeps it alive until the backward pass
    save([inverse]);
    return {
      value: tf.gather(xx as tf.Tensor, perm),
      gradFunc: (dy, saved) => [tf.gather(dy, saved[0] as tf.Tensor1D)],
    };
  });
  return f(x) as T2;
}

/** Every column block (head-sized, d wide) of x [B*R, g*d] as [B, g, R, d]. One transpose serves q, k and v alike. */
function headBlocks(x: T2, batch: number, d: number): tf.Tensor4D {
  const r = x.shape[0] / batch;
  // [B*R, g*d] -> [B, R, g, d] -> [B, g, R, d]
  return tf.transpose(tf.reshape(x, [batch, r, x.shape[1] / d, d]), [0, 2, 1, 3]);
}

/** Blocks [off, off+h) of headBlocks' output as per-head matrices [B*h, R, d]. */
function pickHeads(blocks: tf.Tensor4D, off: number, heads: number): T3 {
  const [b, g, r, c] = blocks.shape;
  // a contiguous run of h blocks per sample: one cheap slice
  const sel = off === 0 && heads === g ? blocks : tf.slice(blocks, [0, off, 0, 0], [b, heads, r, c]);
  return tf.reshape(sel, [b * heads, r, c]);
}

/** Head gradients [B*h, R, d] of column blocks covering all of x's columns in order -> dx [B*R, g*d]. */
function fromHeads(parts: T3[], batch: number, heads: number, d: number): T2 {
  const r = (parts[0] as T3).shape[1];
  // each [B*h, R, d] -> [B, h, R, d]; side by side [B, g, R, d] -> [B, R, g, d] -> [B*R, g*d]
  const blocks = parts.map((p) => tf.reshape(p, [batch, heads, r, d]));
  const all = blocks.length === 1 ? (blocks[0] as tf.Tensor) : tf.concat(blocks, 1);
  return tf.reshape(tf.transpose(all, [0, 2, 1, 3]), [batch * r, parts.length * heads * d]) as T2;
}

/**
 * wasm and webgpu attention as ONE differentiable op over the packed projections: `src` is [qkv] (self-attention, q | k | v
 * column blocks of [B*N, 3C]) or [q, kv] (cross-attention, q [B*N, C] and k | v blocks of [B*M, 2C]). Inside, the
 * per-(sample, head) products are batched products on the engine's GEMM. Being one op keeps the head splits, scores and
 * probabilities (and their gradients) off tfjs's tape, which holds every recorded tensor until the backward ends.
 */
function fusedAttention(src: T2[], batch: number, heads: number, mask: T2 | null): T2 {
  const self = src.length === 1;
  const qSrc = src[0] as T2;
  const c = self ? qSrc.shape[1] / 3 : qSrc.shape[1];
  const d = c / heads;
  const n = qSrc.shape[0] / batch;
  // column block offsets (in heads) of q, k and v in their sources
  const ko = self ? heads : 0;
  const vo = ko + heads;
  const scale = d ** -0.5;
  // the backward of both forwards below, from the saved [...inputs, probabilities]
  const gradFunc = (dy: tf.Tensor, saved: tf.Tensor[]): tf.Tensor[] => {
    const sq = saved[0] as T2;
    const skv = saved[saved.length - 2] as T2;
    const sp = saved[saved.length - 1] as T3;
    // dO [B*N, C] -> [B*h, N, d]
    const dO = pickHeads(headBlocks(dy as T2, batch, d), 0, heads);
    const sqBlocks = headBlocks(sq, batch, d);
    const skvBlocks = self ? sqBlocks : headBlocks(skv, batch, d);
    const dP = tf.matMul(dO, pickHeads(skvBlocks, vo, heads), false, true); // dO @ v^T
    const dV = tf.matMul(sp, dO, true, false); // P^T @ dO
    // softmax backward, then the scale: dS = P * (dP - sum_M(P * dP)) * d^-0.5
    const dS = onWebGpu()
      ? (tf.engine().runKernel(SOFTMAX_GRAD_KERNEL, { p: sp, dp: dP }, { scale }) as tf.Tensor)
      : tf.mul(tf.mul(sp, tf.sub(dP, tf.sum(tf.mul(sp, dP), -1, true))), scale);
    const dQ = tf.matMul(dS, pickHeads(skvBlocks, ko, heads)); // dS @ k
    const dK = tf.matMul(dS, pickHeads(sqBlocks, 0, heads), true, false); // dS^T @ q
    if (self) return [fromHeads([dQ, dK, dV] as T3[], batch, heads, d)];
    return [fromHeads([dQ] as T3[], batch, heads, d), fromHeads([dK, dV] as T3[], batch, heads, d)];
  };
  const f = custom((inputs, save) => {
    const xq = inputs[0] as T2;
    const xkv = inputs[inputs.length - 1] as T2;
    const keys = xkv.shape[0] / batch;
    // the programs take a mask of exactly [N, M]; a broadcast one goes to the stock ops
    const maskFits = !mask || (mask.shape[0] === n && mask.shape[1] === keys);
    if (onWebGpu() && attentionFits(d, keys) && maskFits) {
      // webgpu: two programs reading q, k and v where the projections put them
      const [value, p] = tf
        .engine()
        .runKernel(ATTENTION_KERNEL, mask ? { q: xq, kv: xkv, mask } : { q: xq, kv: xkv }, {
          batch,
          heads,
          dim: c,
          qOffset: 0,
          kOffset: ko * d,
          vOffset: vo * d,
          scale,
        }) as tf.Tensor[];
      save([...inputs, p as tf.Tensor]);
      return { value: value as tf.Tensor, gradFunc };
    }
    const qBlocks = headBlocks(xq, batch, d);
    const kvBlocks = self ? qBlocks : headBlocks(xkv, batch, d);
    const q = pickHeads(qBlocks, 0, heads);
    const k = pickHeads(kvBlocks, ko, heads);
    const v = pickHeads(kvBlocks, vo, heads);
    let scores: tf.Tensor = tf.mul(tf.matMul(q, k, false, true), scale); // [B*h, N, M]
    if (mask) scores = tf.add(scores, mask);
    const p = tf.softmax(scores) as T3;
    const o = tf.matMul(p, v); // [B*h, N, d]
    save([...inputs, p]);
    // [B*h, N, d] -> [B, h, N, d] -> [B, N, h, d] -> [B*N, C]
    const value = tf.reshape(tf.transpose(tf.reshape(o, [batch, heads, n, d]), [0, 2, 1, 3]), [batch * n, c]);
    return { value, gradFunc };
  });
  return f(...src) as T2;
}

/** Self-attention of the packed projections qkv [B*N, 3C] (q | k | v column blocks) -> [B*N, C]. */
export function selfAttentionCore(qkv: T2, batch: number, heads: number, mask: T2 | null): T2 {
  if (engineKernels()) return fusedAttention([qkv], batch, heads, mask);
  const c = qkv.shape[1] / 3;
  const [q, k, v] = tf.split(qkv, [c, c, c], 1) as [T2, T2, T2];
  return attentionCore(q, k, v, batch, heads, mask);
}

/** Cross-attention of queries q [B*N, C] to packed keys and values kv [B*M, 2C] (k | v column blocks). */
export function crossAttentionCore(q: T2, kv: T2, batch: number, heads: number, mask: T2 | null): T2 {
  if (engineKernels()) return fusedAttention([q, kv], batch, heads, mask);
  const c = q.shape[1];
  const [k, v] = tf.split(kv, [c, c], 1) as [T2, T2];
  return attentionCore(q, k, v, batch, heads, mask);
}

/**
 * Multi-head attention core. q [B*N, C], k and v [B*M, C] (rows grouped by sample); mask [N, M] additive or null.
 * Returns [B*N, C]. Scores are softmax(q k^T * d^-0.5 + mask) per sample and head.
 */
export function attentionCore(
  q: T2,
  k: T2,
  v: T2,
  batch: number,
  heads: number,
  mask: tf.Tensor2D | null,
): T2 {
  const c = q.shape[1];
  const d = c / heads;
  const n = q.shape[0] / batch;
  const m = k.shape[0] / batch;
  // [B*N, C] -> [B, N, h, d] -> [B, h, N, d] -> [B*h, N, d]
  const qh = tf.reshape(tf.transpose(tf.reshape(tf.mul(q, d ** -0.5), [batch, n, heads, d]), [0, 2, 1, 3]), [
    batch * heads,
    n,
    d,
  ]) as T3;
  // keys straight to [B*h, d, M] so the score product needs no transpose flag
  const kt = tf.reshape(tf.transpose(tf.reshape(k, [batch, m, heads, d]), [0, 2, 3, 1]), [
    batch * heads,
    d,
    m,
  ]) as T3;
  const vh = tf.reshape(tf.transpose(tf.reshape(v, [batch, m, heads, d]), [0, 2, 1, 3]), [
    batch * heads,
    m,
    d,
  ]) as T3;
  let scores: tf.Tensor = bmm(qh, kt); // [B*h, N, M]
  if (mask) scores = tf.add(scores, mask);
  const probs = tf.softmax(scores) as T3;
  const out = bmm(probs, vh); // [B*h, N, d]
  // [B*h, N, d] -> [B, h, N, d] -> [B, N, h, d] -> [B*N, C]
  return tf.reshape(tf.transpose(tf.reshape(out, [batch, heads, n, d]), [0, 2, 1, 3]), [batch * n, c]) as T2;
}
