// Named parameters of a model: PyTorch shapes and names at the boundary, tfjs layouts inside, converted once.
import * as tf from '@tensorflow/tfjs-core';
import { Rng } from '../rng.js';

/**
 * How a parameter is laid out inside the engine compared with PyTorch:
 * - plain: the same;
 * - linear: PyTorch [out, in] is kept as [in, out] so x @ W needs no transpose;
 * - conv: PyTorch [out, in, kh, kw] is kept as [kh*kw*in, out], the patch-embedding product;
 * - interleaved: a Linear whose PyTorch output index c*depth + l (memory of decoder layer l) is kept as l*width + c,
 *   so each decoder layer's memory is a contiguous block of columns. `depth` is the number of blocks.
 */
export type Layout =
  | { readonly kind: 'plain' }
  | { readonly kind: 'linear' }
  | { readonly kind: 'conv' }
  | { readonly kind: 'interleaved'; readonly depth: number };

export type Init =
  | { readonly kind: 'zeros' }
  | { readonly kind: 'ones' }
  | { readonly kind: 'normal'; readonly std: number }
  | { readonly kind: 'xavier' };

/** One parameter, described in PyTorch terms. */
export interface ParamSpec {
  /** Canonical (workbench) name, e.g. `blocks.0.attn.qkv.weight`. */
  readonly name: string;
  /** PyTorch shape. */
  readonly shape: readonly number[];
  readonly layout: Layout;
  readonly init: Init;
  /** Weight decay applies (the official rule: every parameter except 1-D ones and `*.bias`). */
  readonly decay: boolean;
  /** Trained (false for fixed tables such as sin-cos position embeddings). */
  readonly trainable: boolean;
}

const PLAIN: Layout = { kind: 'plain' };
export const LINEAR: Layout = { kind: 'linear' };

/** The official decay rule, decided on the PyTorch shape. */
export function decays(name: string, shape: readonly number[]): boolean {
  return shape.length > 1 && !name.endsWith('.bias');
}

/** Shorthand for a trained parameter with the official decay rule. */
export function spec(name: string, shape: readonly number[], layout: Layout, init: Init): ParamSpec {
  return { name, shape, layout, init, decay: decays(name, shape), trainable: true };
}

/** A Linear layer's weight [out, in] and bias [out], PyTorch-named. */
export function linearSpecs(
  prefix: string,
  inDim: number,
  outDim: number,
  bias = true,
  layout: Layout = LINEAR,
): ParamSpec[] {
  const out = [spec(`${prefix}.weight`, [outDim, inDim], layout, { kind: 'xavier' })];
  if (bias)
    out.push(
      spec(`${prefix}.bias`, [outDim], layout.kind === 'interleaved' ? layout : PLAIN, { kind: 'zeros' }),
    );
  return out;
}

/** A LayerNorm's weight and bias. */
export function normSpecs(prefix: string, dim: number): ParamSpec[] {
  return [
    spec(`${prefix}.weight`, [dim], PLAIN, { kind: 'ones' }),
    spec(`${prefix}.bias`, [dim], PLAIN, { kind: 'zeros' }),
  ];
}

export function plainSpec(name: string, shape: readonly number[], init: Init): ParamSpec {
  return spec(name, shape, PLAIN, init);
}

/** Engine shape of a parameter given its PyTorch shape. */
export function engineShape(s: ParamSpec): number[] {
  const sh = s.shape;
  switch (s.layout.kind) {
    case 'plain':
      return [...sh];
    case 'linear':
      return [sh[1] as number, sh[0] as number];
    case 'conv':
      return [(sh[1] as number) * (sh[2] as number) * (sh[3] as number), sh[0] as number];
    case 'interleaved':
      return sh.length === 2 ? [sh[1] as number, sh[0] as number] : [...sh];
  }
}

/** PyTorch data -> engine data. */
export function fromTorch(s: ParamSpec, src: Float32Array): Float32Array {
  const sh = s.shape;
  switch (s.layout.kind) {
    case 'plain':
      return src;
    case 'linear': {
      const [o, i] = sh as [number, number];
      const out = new Float32Array(src.length);
      for (let r = 0; r < o; r++) for (let c = 0; c < i; c++) out[c * o + r] = src[r * i + c] as number;
      return out;
    }
    case 'conv': {
      const [o, ci, kh, kw] = sh as [number, number, number, number];
      const out = new Float32Array(src.length);
      for (let a = 0; a < o; a++)
        for (let b = 0; b < ci; b++)
          for (let y = 0; y < kh; y++)
            for (let x = 0; x < kw; x++)
              out[((y * kw + x) * ci + b) * o + a] = src[((a * ci + b) * kh + y) * kw + x] as number;
      return out;
    }
    case 'interleaved': {
      const depth = s.layout.depth;
      const o = sh[0] as number;
      const width = o / depth;
      const i = sh.length === 2 ? (sh[1] as number) : 1;
      const out = new Float32Array(src.length);
      // torch row c*depth + l -> engine column l*width + c
      for (let c = 0; c < width; c++)
        for (let l = 0; l < depth; l++) {
          const tr = c * depth + l;
          const ec = l * width + c;
          for (let k = 0; k < i; k++) out[k * o + ec] = src[tr * i + k] as number;
        }
      return out;
    }
  }
}

/** Engine data -> PyTorch data. */
export function toTorch(s: ParamSpec, src: Float32Array): Float32Array {
  const sh = s.shape;
  switch (s.layout.kind) {
    case 'plain':
      return src;
    case 'linear': {
      const [o, i] = sh as [number, number];
      const out = new Float32Array(src.length);
      for (let r = 0; r < o; r++) for (let c = 0; c < i; c++) out[r * i + c] = src[c * o + r] as number;
      return out;
    }
    case 'conv': {
      const [o, ci, kh, kw] = sh as [number, number, number, number];
      const out = new Float32Array(src.length);
      for (let a = 0; a < o; a++)
        for (let b = 0; b < ci; b++)
          for (let y = 0; y < kh; y++)
            for (let x = 0; x < kw; x++)
              out[((a * ci + b) * kh + y) * kw + x] = src[((y * kw + x) * ci + b) * o + a] as number;
      return out;
    }
    case 'interleaved': {
      const depth = s.layout.depth;
      const o = sh[0] as number;
      const width = o / depth;
      const i = sh.length === 2 ? (sh[1] as number) : 1;
      const out = new Float32Array(src.length);
      for (let c = 0; c < width; c++)
        for (let l = 0; l < depth; l++) {
          const tr = c * depth + l;
          const ec = l * width + c;
          for (let k = 0; k < i; k++) out[tr * i + k] = src[k * o + ec] as number;
        }
      return out;
    }
  }
}

function product(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** Initial PyTorch-layout values for a spec (MAE's init: xavier-uniform Linear/conv, N(0, std) tokens). */
function initialValues(s: ParamSpec, rng: Rng): Float32Array {
  const n = product(s.shape);
  const out = new Float32Array(n);
  switch (s.init.kind) {
    case 'zeros':
      break;
    case 'ones':
      out.fill(1);
      break;
    case 'normal':
      for (let i = 0; i < n; i++) out[i] = rng.normal() * s.init.std;
      break;
    case 'xavier': {
      const fanOut = s.shape[0] as number;
      const fanIn = n / fanOut;
      const bound = Math.sqrt(6 / (fanIn + fanOut));
      for (let i = 0; i < n; i++) out[i] = (rng.uniform() * 2 - 1) * bound;
      break;
    }
  }
  return out;
}

/** Error for weights that do not fit a model: it names every missing, unexpected or misshapen key. */
export class WeightsError extends Error {
  constructor(
    message: string,
    readonly missing: readonly string[] = [],
    readonly unexpected: readonly string[] = [],
  ) {
    super(message);
    this.name = 'WeightsError';
  }
}

/** The variables of one model, by canonical name. */
export class ParamSet {
  readonly specs: ReadonlyMap<string, ParamSpec>;
  private readonly vars = new Map<string, tf.Variable>();

  constructor(specs: readonly ParamSpec[], seed: number) {
    const m = new Map<string, ParamSpec>();
    for (const s of specs) {
      if (m.has(s.name)) throw new Error(`duplicate parameter ${s.name}`);
      m.set(s.name, s);
    }
    this.specs = m;
    const rng = new Rng(seed);
    for (const s of specs) {
      const data = fromTorch(s, initialValues(s, rng));
      this.vars.set(
        s.name,
        // tidy frees the initial value; the variable keeps its own copy
        tf.tidy(() =>
          tf.variable(tf.tensor(data, engineShape(s)), s.trainable, `${s.name}#${seed}#${uid++}`),
        ),
      );
    }
  }

  /** The variable of a parameter. */
  get(name: string): tf.Variable {
    const v = this.vars.get(name);
    if (!v) throw new Error(`no parameter named ${name}`);
    return v;
  }

  has(name: string): boolean {
    return this.vars.has(name);
  }

  names(): string[] {
    return [...this.specs.keys()];
  }

  /** Trained parameters, in declaration order. */
  trainable(): { name: string; variable: tf.Variable; spec: ParamSpec }[] {
    return [...this.specs.values()]
      .filter((s) => s.trainable)
      .map((s) => ({ name: s.name, variable: this.get(s.name), spec: s }));
  }

  /** Engine-layout data of the named parameter (weights, gradients or optimizer moments) -> PyTorch layout. */
  toTorch(name: string, data: Float32Array): Float32Array {
    const s = this.specs.get(name);
    if (!s) throw new Error(`no parameter named ${name}`);
    return toTorch(s, data);
  }

  /** The parameter's value in PyTorch layout. */
  async read(name: string): Promise<Float32Array> {
    return this.toTorch(name, (await this.get(name).data()) as Float32Array);
  }

  /** Sets one parameter from PyTorch-layout data, checking its shape. */
  assign(name: string, data: Float32Array, shape: readonly number[], source = 'weights'): void {
    const s = this.specs.get(name);
    if (!s) throw new WeightsError(`${source}: unexpected key ${name}`, [], [name]);
    if (shape.length !== s.shape.length || shape.some((d, i) => d !== s.shape[i])) {
      throw new WeightsError(
        `${source}: ${name} has shape [${shape.join(', ')}], the model needs [${s.shape.join(', ')}]`,
      );
    }
    const v = this.get(name);
    tf.tidy(() => v.assign(tf.tensor(fromTorch(s, data), engineShape(s))));
  }

  /** Every parameter in PyTorch layout (the reads are issued together and awaited once). */
  async exportTorch(): Promise<Map<string, { shape: number[]; data: Float32Array }>> {
    const specs = [...this.specs.values()];
    const data = await Promise.all(specs.map((s) => this.get(s.name).data()));
    const out = new Map<string, { shape: number[]; data: Float32Array }>();
    specs.forEach((s, i) =>
      out.set(s.name, { shape: [...s.shape], data: toTorch(s, data[i] as Float32Array) }),
    );
    return out;
  }

  dispose(): void {
    for (const v of this.vars.values()) v.dispose();
    this.vars.clear();
  }
}

let uid = 0;
