// The engine's fused kernels on tfjs-backend-webgpu: fewer GPU dispatches per training step.
//
// A step of tfjs's stock ops is ~2,400 dispatches for digpt-micro-32, and at 25-50 us of host time per dispatch the
// small presets are dispatch-bound on any GPU. These programs do in one dispatch what the stock ops do in many, with
// the float32 operations of the wasm kernels (`ops/wasm_gemm.ts`) and of `optim/adamw.ts`, in the same order (sums
// over a row or a column are a workgroup's tree, so their rounding differs within float32's):
//
// - AdamW: the moments of a parameter live in ONE packed tensor [m | v] (2n), so an update is two dispatches, the
//   moments then the parameter from the new moments, instead of ~14 (tfjs programs write one output each).
// - LayerNorm: row statistics [mean, rstd] and the normalised output forward (2), and backward dx (1, one
//   workgroup per row), d(gamma) and d(beta) (1 each, one workgroup per column), instead of ~21.
// - GELU (PyTorch's exact, erf by the rational approximation of Eigen and XLA as on wasm): 1 forward, 1 backward.
// - Attention forward from the packed q | k | v projections: the scores with their softmax (a workgroup per row), then
//   P @ V written in the output's layout: 2 instead of ~10 (head transposes, slices, products, scale, mask, softmax).
//   Its backward stays on tfjs-webgpu's tiled products, with the softmax backward, P * (dP - rowsum(P * dP)) *
//   scale, as one program instead of 4.
// - Sum over the leading axes (bias gradients): 1 dispatch, where tfjs-webgpu transposes first (2).
//
// The stock ops stay the reference: test/engine/webgpu.test.ts checks every kernel here against them.
import * as tf from '@tensorflow/tfjs-core';
import type { WebGPUBackend, WebGPUProgram } from '@tensorflow/tfjs-backend-webgpu';
import { ERF_ALPHA, ERF_BETA, type AdamWScalars } from './wasm_gemm.js';

/** AdamW on a packed moment tensor: inputs p, g, mv ([m | v], 2 * size(p)); attributes AdamWScalars; outputs p, mv. */
export const ADAMW_PACKED_KERNEL = 'DigptAdamWPacked';
/** LayerNorm over the last axis of x [M, C]: inputs x, gamma, beta; attribute eps; outputs y [M, C], stats [M, 2]. */
export const LAYER_NORM_KERNEL = 'DigptLayerNorm';
/** LayerNorm's backward: inputs dy, x, stats, gamma; outputs dx, dgamma, dbeta. */
export const LAYER_NORM_GRAD_KERNEL = 'DigptLayerNormGrad';
/** Exact GELU: input x; output y. */
export const GPU_GELU_KERNEL = 'DigptGpuGelu';
/** GELU's backward: inputs dy, x; output dx. */
export const GPU_GELU_GRAD_KERNEL = 'DigptGpuGeluGrad';
/**
 * Softmax backward over the last axis, scaled: inputs p, dp; attribute scale; output (p * (dp - rowsum(p * dp))) *
 * scale.
 */
export const SOFTMAX_GRAD_KERNEL = 'DigptSoftmaxGrad';
/**
 * Multi-head attention forward from the packed projections: inputs q (rows [B*N, *], q at column qOffset), kv (rows
 * [B*M, *], k and v at columns kOffset and vOffset; may be q's tensor), mask ([N, M], additive; optional); attributes
 * batch, heads, dim (C), qOffset, kOffset, vOffset, scale; outputs out [B*N, C] and the probabilities [B*h, N, M].
 */
export const ATTENTION_KERNEL = 'DigptAttention';

/** The attention program keeps a query row (the head dim) and a row of scores (the keys) in workgroup memory. */
export function attentionFits(headDim: number, keys: number): boolean {
  return headDim <= 256 && keys <= 2048;
}

const FLAT_GROUP = 128;
const ROW_GROUP = 64;

/** A WGSL f32 literal of a JS number. */
function f32(v: number): string {
  return Number.isInteger(v) ? v.toFixed(1) : String(v);
}

/** Horner's rule in WGSL on `x` with coefficients from the highest power down. */
function horner(x: string, cs: readonly number[]): string {
  return cs.slice(1).reduce((acc, c) => `(${acc} * ${x} + ${f32(c)})`, f32(cs[0] as number));
}

// PyTorch's exact GELU, the float32 operations of ops/wasm_gemm.ts's gelu and geluGrad
const GELU_WGSL = `
  fn geluCdf(x : f32) -> f32 {
    let z = clamp(x * ${f32(Math.SQRT1_2)}, -4.0, 4.0);
    let z2 = z * z;
    let erf = (z * ${horner('z2', ERF_ALPHA)}) / ${horner('z2', ERF_BETA)};
    return (erf + 1.0) * 0.5;
  }`;

// a sum over the ROW_GROUP threads of a workgroup, called by all of them (uniform control flow)
const BLOCK_SUM_WGSL = `
  var<workgroup> partial : array<vec2<f32>, ${ROW_GROUP}>;
  fn blockSum2(v : vec2<f32>, tid : i32) -> vec2<f32> {
    partial[tid] = v;
    workgroupBarrier();
    for (var s = ${ROW_GROUP / 2}; s > 0; s = s >> 1) {
      if (tid < s) {
        partial[tid] = partial[tid] + partial[tid + s];
      }
      workgroupBarrier();
    }
    let total = partial[0];
    workgroupBarrier();
    return total;
  }`;

function flat(outputShape: number[]): Pick<WebGPUProgram, 'dispatchLayout' | 'dispatch' | 'workgroupSize'> {
  const size = tf.util.sizeFromShape(outputShape);
  return {
    dispatchLayout: { x: outputShape.map((_, i) => i) },
    dispatch: [Math.ceil(size / FLAT_GROUP), 1, 1],
    workgroupSize: [FLAT_GROUP, 1, 1],
  };
}

/** One workgroup of ROW_GROUP threads per line (a row, or a column); the last workgroups may be spares. */
function perLine(
  outputShape: number[],
  lines: number,
): Pick<WebGPUProgram, 'dispatchLayout' | 'dispatch' | 'workgroupSize'> {
  return {
    dispatchLayout: { x: outputShape.map((_, i) => i) },
    dispatch: [lines, 1, 1],
    workgroupSize: [ROW_GROUP, 1, 1],
  };
}

/**
 * The line of a per-line program and its thread; `line` can pass the last one where tfjs reshapes a long dispatch
 * into a square, so reads use `ln` (clamped) and writes check `line < lines`. Barriers need uniform control flow,
 * so no thread returns early.
 */
const LINE_WGSL = (lines: string) => `
    let line = index / ${ROW_GROUP};
    let tid = i32(localId.x);
    let ln = min(line, ${lines} - 1);`;

type Program = WebGPUProgram & { readonly getUserCode: () => string };

function program(
  key: string,
  variableNames: string[],
  outputShape: number[],
  layout: Pick<WebGPUProgram, 'dispatchLayout' | 'dispatch' | 'workgroupSize'>,
  uniforms: string,
  body: string,
  size = false,
): Program {
  return {
    shaderKey: key,
    variableNames,
    outputShape,
    ...layout,
    uniforms,
    ...(size ? { size: true } : {}),
    getUserCode: () => body,
  };
}

const mainHeader = 'fn main(index : i32)';

function adamWMoments(n: number): Program {
  return program(
    'digpt_adamw_moments',
    ['G', 'MV'],
    [2 * n],
    flat([2 * n]),
    'n : i32, b1 : f32, ob1 : f32, b2 : f32, ob2 : f32,',
    `${mainHeader} {
      if (index < uniforms.size) {
        if (index < uniforms.n) {
          result[index] = MV[index] * uniforms.b1 + G[index] * uniforms.ob1;
        } else {
          let g = G[index - uniforms.n];
          result[index] = MV[index] * uniforms.b2 + (g * g) * uniforms.ob2;
        }
      }
    }`,
    true,
  );
}

function adamWParam(shape: number[]): Program {
  return program(
    'digpt_adamw_param',
    ['P', 'MV'],
    shape,
    flat(shape),
    'n : i32, bc2 : f32, eps : f32, decay : f32, stepSize : f32,',
    `${mainHeader} {
      if (index < uniforms.size) {
        let denom = sqrt(MV[uniforms.n + index]) / uniforms.bc2 + uniforms.eps;
        result[index] = P[index] * uniforms.decay - (MV[index] / denom) * uniforms.stepSize;
      }
    }`,
    true,
  );
}

function layerNormStats(rows: number): Program {
  return program(
    'digpt_ln_stats',
    ['X'],
    [rows, 2],
    perLine([rows, 2], rows),
    'rows : i32, cols : i32, eps : f32,',
    `${BLOCK_SUM_WGSL}
    ${mainHeader} {
      ${LINE_WGSL('uniforms.rows')}
      let base = ln * uniforms.cols;
      let n = f32(uniforms.cols);
      var s = 0.0;
      for (var c = tid; c < uniforms.cols; c += ${ROW_GROUP}) {
        s += X[base + c];
      }
      let mean = blockSum2(vec2<f32>(s, 0.0), tid).x / n;
      var q = 0.0;
      for (var c = tid; c < uniforms.cols; c += ${ROW_GROUP}) {
        let d = X[base + c] - mean;
        q += d * d;
      }
      let variance = blockSum2(vec2<f32>(q, 0.0), tid).x / n;
      if (tid == 0 && line < uniforms.rows) {
        result[line * 2] = mean;
        result[line * 2 + 1] = 1.0 / sqrt(variance + uniforms.eps);
      }
    }`,
  );
}

function layerNormApply(shape: number[]): Program {
  return program(
    'digpt_ln_apply',
    ['X', 'S', 'Gamma', 'Beta'],
    shape,
    flat(shape),
    'cols : i32,',
    `${mainHeader} {
      if (index < uniforms.size) {
        let r = index / uniforms.cols;
        let c = index - r * uniforms.cols;
        let xhat = (X[index] - S[r * 2]) * S[r * 2 + 1];
        result[index] = xhat * Gamma[c] + Beta[c];
      }
    }`,
    true,
  );
}

function layerNormGradX(shape: number[]): Program {
  const rows = tf.util.sizeFromShape(shape) / (shape[shape.length - 1] as number);
  return program(
    'digpt_ln_grad_x',
    ['DY', 'X', 'S', 'Gamma'],
    shape,
    perLine(shape, rows),
    'rows : i32, cols : i32,',
    `${BLOCK_SUM_WGSL}
    ${mainHeader} {
      ${LINE_WGSL('uniforms.rows')}
      let base = ln * uniforms.cols;
      let mean = S[ln * 2];
      let rstd = S[ln * 2 + 1];
      var acc = vec2<f32>(0.0, 0.0);
      for (var c = tid; c < uniforms.cols; c += ${ROW_GROUP}) {
        let dxhat = DY[base + c] * Gamma[c];
        let xhat = (X[base + c] - mean) * rstd;
        acc += vec2<f32>(dxhat, dxhat * xhat);
      }
      let m = blockSum2(acc, tid) / f32(uniforms.cols);
      if (line < uniforms.rows) {
        for (var c = tid; c < uniforms.cols; c += ${ROW_GROUP}) {
          let dxhat = DY[base + c] * Gamma[c];
          let xhat = (X[base + c] - mean) * rstd;
          result[base + c] = rstd * ((dxhat - m.x) - xhat * m.y);
        }
      }
    }`,
  );
}

/**
 * Column sums of x [R, C] (sum over rows), or with `xhat` of dy * xhat (LayerNorm's d(gamma)); `shape` is the
 * output's (C values).
 */
function columnSums(rows: number, cols: number, xhat: boolean, shape: number[] = [cols]): Program {
  const names = xhat ? ['DY', 'X', 'S'] : ['DY'];
  const term = xhat ? 'DY[i] * ((X[i] - S[r * 2]) * S[r * 2 + 1])' : 'DY[i]';
  return program(
    xhat ? 'digpt_colsum_xhat' : 'digpt_colsum',
    names,
    shape,
    perLine(shape, cols),
    'rows : i32, cols : i32,',
    `${BLOCK_SUM_WGSL}
    ${mainHeader} {
      ${LINE_WGSL('uniforms.cols')}
      var s = 0.0;
      for (var r = tid; r < uniforms.rows; r += ${ROW_GROUP}) {
        let i = r * uniforms.cols + ln;
        s += ${term};
      }
      let total = blockSum2(vec2<f32>(s, 0.0), tid).x;
      if (tid == 0 && line < uniforms.cols) {
        result[line] = total;
      }
    }`,
  );
}

function geluForward(shape: number[]): Program {
  return program(
    'digpt_gelu',
    ['X'],
    shape,
    flat(shape),
    '',
    `${GELU_WGSL}
    ${mainHeader} {
      if (index < uniforms.size) {
        let x = X[index];
        result[index] = x * geluCdf(x);
      }
    }`,
    true,
  );
}

function geluBackward(shape: number[]): Program {
  return program(
    'digpt_gelu_grad',
    ['DY', 'X'],
    shape,
    flat(shape),
    '',
    `${GELU_WGSL}
    ${mainHeader} {
      if (index < uniforms.size) {
        let x = X[index];
        let e = exp((x * x) * -0.5);
        result[index] = DY[index] * (geluCdf(x) + (x * ${f32(1 / Math.sqrt(2 * Math.PI))}) * e);
      }
    }`,
    true,
  );
}

function softmaxBackward(shape: number[]): Program {
  const cols = shape[shape.length - 1] as number;
  const rows = tf.util.sizeFromShape(shape) / cols;
  return program(
    'digpt_softmax_grad',
    ['P', 'DP'],
    shape,
    perLine(shape, rows),
    'rows : i32, cols : i32, scale : f32,',
    `${BLOCK_SUM_WGSL}
    ${mainHeader} {
      ${LINE_WGSL('uniforms.rows')}
      let base = ln * uniforms.cols;
      var s = 0.0;
      for (var c = tid; c < uniforms.cols; c += ${ROW_GROUP}) {
        s += P[base + c] * DP[base + c];
      }
      let total = blockSum2(vec2<f32>(s, 0.0), tid).x;
      if (line < uniforms.rows) {
        for (var c = tid; c < uniforms.cols; c += ${ROW_GROUP}) {
          let i = base + c;
          result[i] = (P[i] * (DP[i] - total)) * uniforms.scale;
        }
      }
    }`,
  );
}

/**
 * softmax(q k^T * scale + mask) per (sample, head, query) row, a workgroup per row: the query row and the row's scores
 * sit in workgroup memory; the products read q, k straight from their packed sources (no head transposes).
 */
function attentionScores(shape: [number, number, number], headDim: number, masked: boolean): Program {
  const [bh, queries, keys] = shape;
  const lines = bh * queries;
  return program(
    `digpt_attn_scores_${masked ? 'mask_' : ''}${headDim}_${keys}`,
    masked ? ['Q', 'KV', 'Mask'] : ['Q', 'KV'],
    shape,
    perLine(shape, lines),
    'lines : i32, n : i32, m : i32, heads : i32, d : i32, qWidth : i32, kvWidth : i32, qOff : i32, kOff : i32, ' +
      'scale : f32,',
    `${BLOCK_SUM_WGSL}
    var<workgroup> qrow : array<f32, ${headDim}>;
    var<workgroup> sc : array<f32, ${keys}>;
    fn blockMax(v : f32, tid : i32) -> f32 {
      partial[tid] = vec2<f32>(v, 0.0);
      workgroupBarrier();
      for (var s = ${ROW_GROUP / 2}; s > 0; s = s >> 1) {
        if (tid < s) {
          partial[tid].x = max(partial[tid].x, partial[tid + s].x);
        }
        workgroupBarrier();
      }
      let best = partial[0].x;
      workgroupBarrier();
      return best;
    }
    ${mainHeader} {
      ${LINE_WGSL('uniforms.lines')}
      let m = uniforms.m;
      let d = uniforms.d;
      let i = ln % uniforms.n;
      let bh = ln / uniforms.n;
      let hh = bh % uniforms.heads;
      let b = bh / uniforms.heads;
      let qBase = (b * uniforms.n + i) * uniforms.qWidth + uniforms.qOff + hh * d;
      for (var j = tid; j < d; j += ${ROW_GROUP}) {
        qrow[j] = Q[qBase + j];
      }
      workgroupBarrier();
      var most = -3.402823e+38;
      for (var k = tid; k < m; k += ${ROW_GROUP}) {
        let kBase = (b * m + k) * uniforms.kvWidth + uniforms.kOff + hh * d;
        var s = 0.0;
        for (var j = 0; j < d; j = j + 1) {
          s += qrow[j] * KV[kBase + j];
        }
        let v = s * uniforms.scale${masked ? ' + Mask[i * m + k]' : ''};
        sc[k] = v;
        most = max(most, v);
      }
      let rowMax = blockMax(most, tid);
      var sum = 0.0;
      for (var k = tid; k < m; k += ${ROW_GROUP}) {
        let e = exp(sc[k] - rowMax);
        sc[k] = e;
        sum += e;
      }
      let total = blockSum2(vec2<f32>(sum, 0.0), tid).x;
      if (line < uniforms.lines) {
        for (var k = tid; k < m; k += ${ROW_GROUP}) {
          result[ln * m + k] = sc[k] / total;
        }
      }
    }`,
  );
}

/** P @ V written straight into [B*N, C] (head hh in columns hh*d..), V read from its packed source. */
function attentionValues(rows: number, c: number): Program {
  return program(
    'digpt_attn_values',
    ['P', 'KV'],
    [rows, c],
    flat([rows, c]),
    'n : i32, m : i32, heads : i32, d : i32, kvWidth : i32, vOff : i32,',
    `${mainHeader} {
      if (index < uniforms.size) {
        let c = uniforms.heads * uniforms.d;
        let row = index / c;
        let col = index - row * c;
        let hh = col / uniforms.d;
        let j = col - hh * uniforms.d;
        let b = row / uniforms.n;
        let i = row - b * uniforms.n;
        let m = uniforms.m;
        let pBase = ((b * uniforms.heads + hh) * uniforms.n + i) * m;
        let vBase = b * m * uniforms.kvWidth + uniforms.vOff + hh * uniforms.d + j;
        var s = 0.0;
        for (var k = 0; k < m; k = k + 1) {
          s += P[pBase + k] * KV[vBase + k * uniforms.kvWidth];
        }
        result[index] = s;
      }
    }`,
    true,
  );
}

interface KernelArgs {
  readonly inputs: tf.NamedTensorInfoMap;
  readonly backend: unknown;
  readonly attrs?: tf.NamedAttrMap;
}

type Uniform = { type: 'int32' | 'float32'; data: number[] };
const i32 = (v: number): Uniform => ({ type: 'int32', data: [v] });
const fl = (v: number): Uniform => ({ type: 'float32', data: [v] });

function run(args: KernelArgs, p: Program, inputs: tf.TensorInfo[], uniforms: Uniform[]): tf.TensorInfo {
  for (const t of inputs)
    if (t.dtype !== 'float32') throw new Error(`${p.shaderKey}: takes float32 tensors, got ${t.dtype}`);
  return (args.backend as WebGPUBackend).runWebGPUProgram(p, inputs, 'float32', uniforms);
}

function input(args: KernelArgs, name: string): tf.TensorInfo {
  const t = args.inputs[name];
  if (!t) throw new Error(`webgpu kernel: input ${name} is missing`);
  return t;
}

function rowsCols(x: tf.TensorInfo): [number, number] {
  const cols = x.shape[x.shape.length - 1] as number;
  return [tf.util.sizeFromShape(x.shape) / cols, cols];
}

function adamWPacked(args: KernelArgs): tf.TensorInfo[] {
  const [p, g, mv] = [input(args, 'p'), input(args, 'g'), input(args, 'mv')];
  const n = tf.util.sizeFromShape(p.shape);
  if (tf.util.sizeFromShape(g.shape) !== n || tf.util.sizeFromShape(mv.shape) !== 2 * n)
    throw new Error(`${ADAMW_PACKED_KERNEL}: g must have p's ${n} values and mv twice that`);
  const a = args.attrs as unknown as AdamWScalars;
  const mv2 = run(
    args,
    adamWMoments(n),
    [g, mv],
    [i32(n), fl(a.beta1), fl(1 - a.beta1), fl(a.beta2), fl(1 - a.beta2)],
  );
  const p2 = run(
    args,
    adamWParam([...p.shape]),
    [p, mv2],
    [i32(n), fl(a.bc2Sqrt), fl(a.eps), fl(a.decay), fl(a.stepSize)],
  );
  return [p2, mv2];
}

function layerNorm(args: KernelArgs): tf.TensorInfo[] {
  const [x, gamma, beta] = [input(args, 'x'), input(args, 'gamma'), input(args, 'beta')];
  const [rows, cols] = rowsCols(x);
  const eps = (args.attrs as unknown as { eps: number }).eps;
  const stats = run(args, layerNormStats(rows), [x], [i32(rows), i32(cols), fl(eps)]);
  const y = run(args, layerNormApply([...x.shape]), [x, stats, gamma, beta], [i32(cols)]);
  return [y, stats];
}

function layerNormGrad(args: KernelArgs): tf.TensorInfo[] {
  const [dy, x, stats, gamma] = ['dy', 'x', 'stats', 'gamma'].map((n) => input(args, n)) as tf.TensorInfo[];
  const [rows, cols] = rowsCols(x as tf.TensorInfo);
  const dims = [i32(rows), i32(cols)];
  const dx = run(
    args,
    layerNormGradX([...(x as tf.TensorInfo).shape]),
    [dy, x, stats, gamma] as tf.TensorInfo[],
    dims,
  );
  const dgamma = run(args, columnSums(rows, cols, true), [dy, x, stats] as tf.TensorInfo[], dims);
  const dbeta = run(args, columnSums(rows, cols, false), [dy as tf.TensorInfo], dims);
  return [dx, dgamma, dbeta];
}

function softmaxGrad(args: KernelArgs): tf.TensorInfo {
  const [p, dp] = [input(args, 'p'), input(args, 'dp')];
  const [rows, cols] = rowsCols(p);
  const scale = (args.attrs as unknown as { scale: number }).scale;
  return run(args, softmaxBackward([...p.shape]), [p, dp], [i32(rows), i32(cols), fl(scale)]);
}

function attention(args: KernelArgs): tf.TensorInfo[] {
  const [q, kv] = [input(args, 'q'), input(args, 'kv')];
  const mask = args.inputs['mask'];
  const a = args.attrs as unknown as {
    batch: number;
    heads: number;
    dim: number;
    qOffset: number;
    kOffset: number;
    vOffset: number;
    scale: number;
  };
  const d = a.dim / a.heads;
  const n = (q.shape[0] as number) / a.batch;
  const m = (kv.shape[0] as number) / a.batch;
  if (!Number.isInteger(d) || !Number.isInteger(n) || !Number.isInteger(m) || !attentionFits(d, m))
    throw new Error(`${ATTENTION_KERNEL}: ${a.heads} heads of ${a.dim} over ${m} keys do not fit`);
  if (mask && (mask.shape.length !== 2 || mask.shape[0] !== n || mask.shape[1] !== m))
    throw new Error(`${ATTENTION_KERNEL}: the mask must be [${n}, ${m}], got [${mask.shape.join(', ')}]`);
  const [qWidth, kvWidth] = [q.shape[1] as number, kv.shape[1] as number];
  const lines = a.batch * a.heads * n;
  const p = run(args, attentionScores([a.batch * a.heads, n, m], d, !!mask), mask ? [q, kv, mask] : [q, kv], [
    i32(lines),
    i32(n),
    i32(m),
    i32(a.heads),
    i32(d),
    i32(qWidth),
    i32(kvWidth),
    i32(a.qOffset),
    i32(a.kOffset),
    fl(a.scale),
  ]);
  const out = run(
    args,
    attentionValues(a.batch * n, a.dim),
    [p, kv],
    [i32(n), i32(m), i32(a.heads), i32(d), i32(kvWidth), i32(a.vOffset)],
  );
  return [out, p];
}

const originals = new Map<string, tf.KernelConfig>();

/** Sum over the leading axes of a float32 tensor in one dispatch; everything else goes to tfjs-webgpu's Sum. */
function sum(args: KernelArgs): tf.TensorInfo {
  const x = input(args, 'x');
  const { axis, keepDims } = args.attrs as unknown as { axis: number | number[]; keepDims: boolean };
  const axes = tf.util.parseAxisParam(axis, x.shape).sort((a, b) => a - b);
  const leading = axes.length > 0 && axes.length < x.shape.length && axes.every((a, i) => a === i);
  if (!leading || x.dtype !== 'float32' || tf.util.sizeFromShape(x.shape) === 0)
    return (originals.get('Sum') as tf.KernelConfig).kernelFunc(args as never) as tf.TensorInfo;
  const rows = tf.util.sizeFromShape(x.shape.slice(0, axes.length));
  const cols = tf.util.sizeFromShape(x.shape.slice(axes.length));
  const shape = keepDims ? x.shape.map((d, i) => (i < axes.length ? 1 : d)) : x.shape.slice(axes.length);
  return run(args, columnSums(rows, cols, false, shape), [x], [i32(rows), i32(cols)]);
}

const KERNELS: Record<string, tf.KernelFunc> = {
  [ADAMW_PACKED_KERNEL]: adamWPacked as tf.KernelFunc,
  [LAYER_NORM_KERNEL]: layerNorm as tf.KernelFunc,
  [LAYER_NORM_GRAD_KERNEL]: layerNormGrad as tf.KernelFunc,
  [GPU_GELU_KERNEL]: ((args: KernelArgs) => {
    const x = input(args, 'x');
    return run(args, geluForward([...x.shape]), [x], []);
  }) as tf.KernelFunc,
  [GPU_GELU_GRAD_KERNEL]: ((args: KernelArgs) => {
    const [dy, x] = [input(args, 'dy'), input(args, 'x')];
    return run(args, geluBackward([...x.shape]), [dy, x], []);
  }) as tf.KernelFunc,
  [SOFTMAX_GRAD_KERNEL]: softmaxGrad as tf.KernelFunc,
  [ATTENTION_KERNEL]: attention as tf.KernelFunc,
};

/**
 * True on webgpu; there, also registers the kernels above and the Sum replacement (once). Called by the ops that use
 * them, as `ops/nn.ts` puts the wasm kernels in place on first use.
 */
export function onWebGpu(): boolean {
  if (tf.getBackend() !== 'webgpu') return false;
  if (!tf.getKernel(ADAMW_PACKED_KERNEL, 'webgpu')) {
    for (const [kernelName, kernelFunc] of Object.entries(KERNELS))
      tf.registerKernel({ kernelName, backendName: 'webgpu', kernelFunc });
    const stock = tf.getKernel('Sum', 'webgpu');
    if (stock && !originals.has('Sum')) {
      originals.set('Sum', stock);
      tf.unregisterKernel('Sum', 'webgpu');
      tf.registerKernel({ ...stock, kernelFunc: sum as tf.KernelFunc });
    }
  }
  return true;
}

/** Puts tfjs-webgpu's Sum back and unregisters the engine's kernels (for comparisons with the stock ops). */
export function restoreWebGpuKernels(): void {
  for (const name of Object.keys(KERNELS))
    if (tf.getKernel(name, 'webgpu')) tf.unregisterKernel(name, 'webgpu');
  const stock = originals.get('Sum');
  if (stock) {
    tf.unregisterKernel('Sum', 'webgpu');
    tf.registerKernel(stock);
    originals.delete('Sum');
  }
}
