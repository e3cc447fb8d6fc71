// A float32 GEMM for tfjs-backend-wasm, in WebAssembly generated here and run on tfjs's own heap (no copies).
//
// Why: tfjs-wasm's products go through XNNPACK's SIMD128 kernels only for plain 2-D products (transposeA,
// transposeB or a batch dimension fall to a scalar loop), XNNPACK's wasm kernels multiply and add separately, and
// tfjs hands every right operand to XNNPACK as fresh "weights" to pack. This GEMM:
// - packs both operands itself, so transposed operands cost nothing extra and batched products are one call;
// - uses `f32x4.relaxed_madd` (fused multiply-add where the CPU has it) when the engine's WebAssembly has relaxed
//   SIMD (Chromium/Electron by default; Node 20 after `--experimental-wasm-relaxed-simd`, which `enableRelaxedSimd`
//   sets at run time), otherwise multiply + add;
// - register-blocks MR x 8 of C in 2*MR SIMD registers (MR = 6 with fused multiply-add, 5 without), with panels of
//   B packed k-major so the inner loop reads 2 vectors of B and MR broadcasts of A per step of k.
// Measured on this machine (2-core AMD EPYC, Node 20): ~50 GFLOP/s in the micro-kernel with relaxed_madd, against
// ~26 GFLOP/s for tfjs-wasm's XNNPACK products (see BENCHMARKS.md).

// The few WebAssembly JS API members used here (the project's TypeScript libs have no WebAssembly declarations).
interface WasmMemory {
  readonly buffer: ArrayBuffer;
}
interface WasmApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { exports: Record<string, unknown> };
  validate(bytes: Uint8Array): boolean;
}
const WA = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;

/** LEB128 of an unsigned integer. */
function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n !== 0) b |= 0x80;
    out.push(b);
  } while (n !== 0);
  return out;
}

/** LEB128 of a signed 32-bit integer. */
function sleb(n: number): number[] {
  const out: number[] = [];
  for (;;) {
    const b = n & 0x7f;
    n >>= 7;
    if ((n === 0 && (b & 0x40) === 0) || (n === -1 && (b & 0x40) !== 0)) {
      out.push(b);
      return out;
    }
    out.push(b | 0x80);
  }
}

const I32 = 0x7f;
const F32 = 0x7d;
const V128 = 0x7b;

/** A function body under construction: a few helpers per WebAssembly instruction used here. */
class Body {
  readonly code: number[] = [];
  get(i: number): this {
    this.code.push(0x20, ...uleb(i));
    return this;
  }
  set(i: number): this {
    this.code.push(0x21, ...uleb(i));
    return this;
  }
  i32(v: number): this {
    this.code.push(0x41, ...sleb(v));
    return this;
  }
  f32(v: number): this {
    const bytes = new Uint8Array(new Float32Array([v]).buffer);
    this.code.push(0x43, ...bytes);
    return this;
  }
  op(...bytes: number[]): this {
    this.code.push(...bytes);
    return this;
  }
  simd(opcode: number, ...imm: number[]): this {
    this.code.push(0xfd, ...uleb(opcode), ...imm);
    return this;
  }
  /** memarg: alignment (log2) and offset */
  static mem(align: number, offset: number): number[] {
    return [...uleb(align), ...uleb(offset)];
  }
}

const OP = {
  block: 0x02,
  loop: 0x03,
  if: 0x04,
  else: 0x05,
  end: 0x0b,
  br: 0x0c,
  brIf: 0x0d,
  void: 0x40,
  i32Eqz: 0x45,
  i32LtU: 0x49,
  i32Add: 0x6a,
  i32Sub: 0x6b,
  i32Mul: 0x6c,
  i32And: 0x71,
  f32Sqrt: 0x91,
  f32Add: 0x92,
  f32Sub: 0x93,
  f32Mul: 0x94,
  f32Div: 0x95,
  f32Load: 0x2a,
  f32Store: 0x38,
  f32Const: 0x43,
};
const SIMD = {
  load: 0x00,
  load32Splat: 0x09,
  store: 0x0b,
  f32x4Splat: 0x13,
  f32x4ExtractLane: 0x1f,
  f32x4Sqrt: 0xe3,
  f32x4Nearest: 0x6a,
  i32x4Shl: 0xab,
  i32x4Add: 0xae,
  i32x4Splat: 0x11,
  f32x4Min: 0xe8,
  f32x4Max: 0xe9,
  i32x4TruncSatF32x4S: 0xf8,
  f32x4Add: 0xe4,
  f32x4Sub: 0xe5,
  f32x4Mul: 0xe6,
  f32x4Div: 0xe7,
  relaxedMadd: 0x105,
};

interface FnDef {
  name: string;
  /** parameter types (I32, F32) */
  params: number[];
  locals: [number, number][]; // (count, type)
  body: Body;
}

/**
 * Micro-kernel k{mr}(ap, bp, c, ldc, kc, acc): C[mr x 8] (+)= Ap[kc][mr] . Bp[kc][8], C at byte address c with a row
 * stride of ldc bytes; acc = 0 overwrites C, 1 adds to it.
 */
function kernel(mr: number, fma: boolean): FnDef {
  const [ap, bp, c, ldc, kc, acc] = [0, 1, 2, 3, 4, 5];
  const k = 6;
  const p = (r: number) => 7 + r; // row addresses of C
  const vb = 7 + mr; // b0, b1
  const vt = vb + 2;
  const vc = (r: number, h: number) => vt + 1 + 2 * r + h;
  const b = new Body();
  for (let r = 0; r < mr; r++) b.get(c).get(ldc).i32(r).op(OP.i32Mul, OP.i32Add).set(p(r));
  b.get(acc).op(OP.if, OP.void);
  for (let r = 0; r < mr; r++)
    for (const h of [0, 1])
      b.get(p(r))
        .simd(SIMD.load, ...Body.mem(4, 16 * h))
        .set(vc(r, h));
  b.op(OP.end);
  b.get(kc).set(k);
  b.op(OP.block, OP.void, OP.loop, OP.void);
  b.get(k).op(OP.i32Eqz, OP.brIf, 1);
  b.get(bp)
    .simd(SIMD.load, ...Body.mem(4, 0))
    .set(vb);
  b.get(bp)
    .simd(SIMD.load, ...Body.mem(4, 16))
    .set(vb + 1);
  for (let r = 0; r < mr; r++) {
    b.get(ap)
      .simd(SIMD.load32Splat, ...Body.mem(2, 4 * r))
      .set(vt);
    for (const h of [0, 1]) {
      if (fma)
        b.get(vt)
          .get(vb + h)
          .get(vc(r, h))
          .simd(SIMD.relaxedMadd)
          .set(vc(r, h));
      else
        b.get(vc(r, h))
          .get(vt)
          .get(vb + h)
          .simd(SIMD.f32x4Mul)
          .simd(SIMD.f32x4Add)
          .set(vc(r, h));
    }
  }
  b.get(ap)
    .i32(4 * mr)
    .op(OP.i32Add)
    .set(ap);
  b.get(bp).i32(32).op(OP.i32Add).set(bp);
  b.get(k).i32(1).op(OP.i32Sub).set(k);
  b.op(OP.br, 0, OP.end, OP.end);
  for (let r = 0; r < mr; r++)
    for (const h of [0, 1])
      b.get(p(r))
        .get(vc(r, h))
        .simd(SIMD.store, ...Body.mem(4, 16 * h));
  b.op(OP.end);
  return {
    name: `k${mr}`,
    params: new Array<number>(6).fill(I32),
    locals: [
      [1 + mr, I32],
      [3 + 2 * mr, V128],
    ],
    body: b,
  };
}

/**
 * pack(src, cs, ks, dst, kc, n, w): dst[k*w + j] = j < n ? src[j*cs + k*ks] : 0 for k < kc, j < w (strides in
 * bytes). Packs a panel of either operand, transposed or not.
 */
function pack(): FnDef {
  const [src, cs, ks, dst, kc, n, w] = [0, 1, 2, 3, 4, 5, 6];
  const [k, j, row] = [7, 8, 9];
  const b = new Body();
  b.i32(0).set(k);
  b.op(OP.block, OP.void, OP.loop, OP.void);
  b.get(k).get(kc).op(OP.i32LtU, OP.i32Eqz, OP.brIf, 1);
  b.get(src).get(k).get(ks).op(OP.i32Mul, OP.i32Add).set(row);
  b.i32(0).set(j);
  b.op(OP.block, OP.void, OP.loop, OP.void);
  b.get(j).get(w).op(OP.i32LtU, OP.i32Eqz, OP.brIf, 1);
  b.get(dst);
  b.get(j).get(n).op(OP.i32LtU, OP.if, 0x7d); // result f32
  b.get(row)
    .get(j)
    .get(cs)
    .op(OP.i32Mul, OP.i32Add, OP.f32Load, ...Body.mem(2, 0));
  b.op(OP.else, OP.f32Const, 0, 0, 0, 0, OP.end);
  b.op(OP.f32Store, ...Body.mem(2, 0));
  b.get(dst).i32(4).op(OP.i32Add).set(dst);
  b.get(j).i32(1).op(OP.i32Add).set(j);
  b.op(OP.br, 0, OP.end, OP.end);
  b.get(k).i32(1).op(OP.i32Add).set(k);
  b.op(OP.br, 0, OP.end, OP.end);
  b.op(OP.end);
  return { name: 'pack', params: new Array<number>(7).fill(I32), locals: [[3, I32]], body: b };
}

/** pack8(src, ks, dst, kc): dst[k*8 .. k*8+8] = src[k*ks ..] (a full panel of a row-major operand, vector copies). */
function pack8(): FnDef {
  const [src, ks, dst, kc] = [0, 1, 2, 3];
  const b = new Body();
  b.op(OP.block, OP.void, OP.loop, OP.void);
  b.get(kc).op(OP.i32Eqz, OP.brIf, 1);
  for (const h of [0, 1])
    b.get(dst)
      .get(src)
      .simd(SIMD.load, ...Body.mem(2, 16 * h))
      .simd(SIMD.store, ...Body.mem(2, 16 * h));
  b.get(src).get(ks).op(OP.i32Add).set(src);
  b.get(dst).i32(32).op(OP.i32Add).set(dst);
  b.get(kc).i32(1).op(OP.i32Sub).set(kc);
  b.op(OP.br, 0, OP.end, OP.end);
  b.op(OP.end);
  return { name: 'pack8', params: new Array<number>(4).fill(I32), locals: [], body: b };
}

/**
 * adamw(p, g, m, v, pOut, mOut, vOut, n, beta1, 1-beta1, beta2, 1-beta2, sqrt(bc2), eps, decay, stepSize): one AdamW
 * update of n floats in the order of PyTorch's (and `optim/adamw.ts`'s) separate float32 operations:
 * m' = m*b1 + g*(1-b1); v' = v*b2 + (g*g)*(1-b2); p' = p*decay - (m' / (sqrt(v')/sqrt(bc2) + eps)) * stepSize.
 */
function adamw(): FnDef {
  const [p, g, m, v, po, mo, vo, n] = [0, 1, 2, 3, 4, 5, 6, 7];
  const sc = (i: number) => 8 + i; // the 8 f32 scalars
  const i = 16; // element offset in bytes
  const end = 17;
  const vs = (j: number) => 18 + j; // splats of the scalars, as v128 locals
  const [vg, vm, vv] = [26, 27, 28];
  const b = new Body();
  for (let j = 0; j < 8; j++) b.get(sc(j)).simd(SIMD.f32x4Splat).set(vs(j));
  const [B1, OB1, B2, OB2, BC2, EPS, DEC, SS] = [0, 1, 2, 3, 4, 5, 6, 7];
  // vector part: n & ~3 elements
  b.get(n).i32(-4).op(OP.i32And).i32(4).op(OP.i32Mul).set(end);
  b.i32(0).set(i);
  const at = (base: number) => b.get(base).get(i).op(OP.i32Add);
  b.op(OP.block, OP.void, OP.loop, OP.void);
  b.get(i).get(end).op(OP.i32LtU, OP.i32Eqz, OP.brIf, 1);
  at(g)
    .simd(SIMD.load, ...Body.mem(2, 0))
    .set(vg);
  // m' = m*b1 + g*(1-b1)
  at(mo);
  at(m).simd(SIMD.load, ...Body.mem(2, 0));
  b.get(vs(B1))
    .simd(SIMD.f32x4Mul)
    .get(vg)
    .get(vs(OB1))
    .simd(SIMD.f32x4Mul)
    .simd(SIMD.f32x4Add)
    .op(0x22, vm) // local.tee
    .simd(SIMD.store, ...Body.mem(2, 0));
  // v' = v*b2 + (g*g)*(1-b2)
  at(vo);
  at(v).simd(SIMD.load, ...Body.mem(2, 0));
  b.get(vs(B2))
    .simd(SIMD.f32x4Mul)
    .get(vg)
    .get(vg)
    .simd(SIMD.f32x4Mul)
    .get(vs(OB2))
    .simd(SIMD.f32x4Mul)
    .simd(SIMD.f32x4Add)
    .op(0x22, vv)
    .simd(SIMD.store, ...Body.mem(2, 0));
  // p' = p*decay - (m' / (sqrt(v')/sqrt(bc2) + eps)) * stepSize
  at(po);
  at(p).simd(SIMD.load, ...Body.mem(2, 0));
  b.get(vs(DEC)).simd(SIMD.f32x4Mul);
  b.get(vm).get(vv).simd(SIMD.f32x4Sqrt).get(vs(BC2)).simd(SIMD.f32x4Div).get(vs(EPS)).simd(SIMD.f32x4Add);
  b.simd(SIMD.f32x4Div).get(vs(SS)).simd(SIMD.f32x4Mul).simd(SIMD.f32x4Sub);
  b.simd(SIMD.store, ...Body.mem(2, 0));
  b.get(i).i32(16).op(OP.i32Add).set(i);
  b.op(OP.br, 0, OP.end, OP.end);
  // scalar tail, the same operations on f32
  const fl = (base: number) => at(base).op(OP.f32Load, ...Body.mem(2, 0));
  b.get(n).i32(4).op(OP.i32Mul).set(end);
  b.op(OP.block, OP.void, OP.loop, OP.void);
  b.get(i).get(end).op(OP.i32LtU, OP.i32Eqz, OP.brIf, 1);
  at(mo);
  fl(m);
  b.get(sc(B1)).op(OP.f32Mul);
  fl(g);
  b.get(sc(OB1)).op(OP.f32Mul, OP.f32Add, OP.f32Store, ...Body.mem(2, 0));
  at(vo);
  fl(v);
  b.get(sc(B2)).op(OP.f32Mul);
  fl(g);
  fl(g);
  b.op(OP.f32Mul)
    .get(sc(OB2))
    .op(OP.f32Mul, OP.f32Add, OP.f32Store, ...Body.mem(2, 0));
  at(po);
  fl(p);
  b.get(sc(DEC)).op(OP.f32Mul);
  fl(mo);
  fl(vo);
  b.op(OP.f32Sqrt).get(sc(BC2)).op(OP.f32Div).get(sc(EPS)).op(OP.f32Add);
  b.op(OP.f32Div)
    .get(sc(SS))
    .op(OP.f32Mul, OP.f32Sub, OP.f32Store, ...Body.mem(2, 0));
  b.get(i).i32(4).op(OP.i32Add).set(i);
  b.op(OP.br, 0, OP.end, OP.end);
  b.op(OP.end);
  return {
    name: 'adamw',
    params: [...new Array<number>(8).fill(I32), ...new Array<number>(8).fill(F32)],
    locals: [
      [2, I32],
      [11, V128],
    ],
    body: b,
  };
}

/** Emits `for (i = 0; i < end; i += step) { body }` over the i32 local i (end a local). */
function forLoop(b: Body, i: number, end: number, step: number, body: () => void): void {
  b.i32(0).set(i);
  b.op(OP.block, OP.void, OP.loop, OP.void);
  b.get(i).get(end).op(OP.i32LtU, OP.i32Eqz, OP.brIf, 1);
  body();
  b.get(i).i32(step).op(OP.i32Add).set(i);
  b.op(OP.br, 0, OP.end, OP.end);
}

/**
 * colsum(src, dst, rows, cols, scale): dst[j] = scale * sum_r src[r*cols + j] (a reduction over the leading axes),
 * rows >= 1; rows are added in order, 4 columns per vector.
 */
function colsum(): FnDef {
  const [src, dst, rows, cols, scale] = [0, 1, 2, 3, 4];
  const [r, j, vend, end, row] = [5, 6, 7, 8, 9];
  const b = new Body();
  b.get(cols).i32(-4).op(OP.i32And).i32(4).op(OP.i32Mul).set(vend);
  b.get(cols).i32(4).op(OP.i32Mul).set(end);
  b.get(rows).get(cols).op(OP.i32Mul).i32(4).op(OP.i32Mul).set(row); // bytes of the whole matrix
  // dst = row 0
  forLoop(b, j, end, 4, () => {
    b.get(dst).get(j).op(OP.i32Add);
    b.get(src)
      .get(j)
      .op(OP.i32Add, OP.f32Load, ...Body.mem(2, 0));
    b.op(OP.f32Store, ...Body.mem(2, 0));
  });
  // dst += rows 1.. (r is the byte offset of the row)
  b.get(cols).i32(4).op(OP.i32Mul).set(r);
  b.op(OP.block, OP.void, OP.loop, OP.void);
  b.get(r).get(row).op(OP.i32LtU, OP.i32Eqz, OP.brIf, 1);
  forLoop(b, j, vend, 16, () => {
    b.get(dst).get(j).op(OP.i32Add);
    b.get(dst)
      .get(j)
      .op(OP.i32Add)
      .simd(SIMD.load, ...Body.mem(2, 0));
    b.get(src)
      .get(r)
      .op(OP.i32Add)
      .get(j)
      .op(OP.i32Add)
      .simd(SIMD.load, ...Body.mem(2, 0));
    b.simd(SIMD.f32x4Add).simd(SIMD.store, ...Body.mem(2, 0));
  });
  b.get(vend).set(j);
  b.op(OP.block, OP.void, OP.loop, OP.void);
  b.get(j).get(end).op(OP.i32LtU, OP.i32Eqz, OP.brIf, 1);
  b.get(dst).get(j).op(OP.i32Add);
  b.get(dst)
    .get(j)
    .op(OP.i32Add, OP.f32Load, ...Body.mem(2, 0));
  b.get(src)
    .get(r)
    .op(OP.i32Add)
    .get(j)
    .op(OP.i32Add, OP.f32Load, ...Body.mem(2, 0));
  b.op(OP.f32Add, OP.f32Store, ...Body.mem(2, 0));
  b.get(j).i32(4).op(OP.i32Add).set(j);
  b.op(OP.br, 0, OP.end, OP.end);
  b.get(r).get(cols).i32(4).op(OP.i32Mul, OP.i32Add).set(r);
  b.op(OP.br, 0, OP.end, OP.end);
  // dst *= scale
  forLoop(b, j, end, 4, () => {
    b.get(dst).get(j).op(OP.i32Add);
    b.get(dst)
      .get(j)
      .op(OP.i32Add, OP.f32Load, ...Body.mem(2, 0));
    b.get(scale).op(OP.f32Mul, OP.f32Store, ...Body.mem(2, 0));
  });
  b.op(OP.end);
  return { name: 'colsum', params: [I32, I32, I32, I32, F32], locals: [[5, I32]], body: b };
}

/** rowsum(src, dst, rows, cols, scale): dst[r] = scale * sum_j src[r*cols + j] (a reduction over trailing axes). */
function rowsum(): FnDef {
  const [src, dst, rows, cols, scale] = [0, 1, 2, 3, 4];
  const [r, j, vend, end] = [5, 6, 7, 8];
  const acc = 9; // v128
  const t = 10; // f32
  const b = new Body();
  b.get(cols).i32(-4).op(OP.i32And).i32(4).op(OP.i32Mul).set(vend);
  b.get(cols).i32(4).op(OP.i32Mul).set(end);
  forLoop(b, r, rows, 1, () => {
    b.op(OP.f32Const, 0, 0, 0, 0).simd(SIMD.f32x4Splat).set(acc);
    forLoop(b, j, vend, 16, () => {
      b.get(acc);
      b.get(src)
        .get(j)
        .op(OP.i32Add)
        .simd(SIMD.load, ...Body.mem(2, 0));
      b.simd(SIMD.f32x4Add).set(acc);
    });
    b.get(acc).simd(SIMD.f32x4ExtractLane, 0);
    b.get(acc).simd(SIMD.f32x4ExtractLane, 1).op(OP.f32Add);
    b.get(acc).simd(SIMD.f32x4ExtractLane, 2).op(OP.f32Add);
    b.get(acc).simd(SIMD.f32x4ExtractLane, 3).op(OP.f32Add);
    b.set(t);
    b.get(vend).set(j);
    b.op(OP.block, OP.void, OP.loop, OP.void);
    b.get(j).get(end).op(OP.i32LtU, OP.i32Eqz, OP.brIf, 1);
    b.get(t)
      .get(src)
      .get(j)
      .op(OP.i32Add, OP.f32Load, ...Body.mem(2, 0), OP.f32Add)
      .set(t);
    b.get(j).i32(4).op(OP.i32Add).set(j);
    b.op(OP.br, 0, OP.end, OP.end);
    b.get(dst)
      .get(t)
      .get(scale)
      .op(OP.f32Mul, OP.f32Store, ...Body.mem(2, 0));
    b.get(dst).i32(4).op(OP.i32Add).set(dst);
    b.get(src).get(end).op(OP.i32Add).set(src);
  });
  b.op(OP.end);
  return {
    name: 'rowsum',
    params: [I32, I32, I32, I32, F32],
    locals: [
      [4, I32],
      [1, V128],
      [1, F32],
    ],
    body: b,
  };
}

// float32 erf as x * alpha(x^2) / beta(x^2) on [-4, 4] (the rational approximation of Eigen and XLA; outside, the
// clamp gives +-1 to float32 precision), coefficients from the highest power down
export const ERF_ALPHA = [
  -2.72614225801306e-10, 2.77068142495902e-8, -2.10102402082508e-6, -5.69250639462346e-5,
  -7.34990630326855e-4, -2.95459980854025e-3, -1.60960333262415e-2,
];
export const ERF_BETA = [
  -1.45660718464996e-5, -2.13374055278905e-4, -1.68282697438203e-3, -7.37332916720468e-3,
  -1.42647390514189e-2,
];
// exp(r) ~ 1 + r + r^2 * P(r) for |r| <= ln2/2 (Cephes expf), after exp(t) = 2^k exp(r), r = t - k ln2 in two parts
const EXP_P = [
  1.98756915e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1,
];
const LN2_HI = 0.693359375;
const LN2_LO = -2.1219444e-4;

/** A v128 local set to splat(v) at the start of a function body. */
function splatConst(b: Body, local: number, v: number): void {
  b.f32(v).simd(SIMD.f32x4Splat).set(local);
}

/** Horner's rule on the value in local `x` with constants in locals cs (highest power first); leaves the result. */
function horner(b: Body, x: number, cs: number[]): void {
  b.get(cs[0] as number);
  for (const c of cs.slice(1)) b.get(x).simd(SIMD.f32x4Mul).get(c).simd(SIMD.f32x4Add);
}

/**
 * gelu(x, y, cdf, nvec): for 4*nvec floats, cdf = 0.5 * (1 + erf(x / sqrt 2)) and y = x * cdf (PyTorch's exact GELU;
 * the backward needs cdf).
 */
function geluForward(): FnDef {
  const [x, y, cdf, nvec] = [0, 1, 2, 3];
  const [i, end] = [4, 5];
  let next = 6;
  const c = (v: number) => {
    const l = next++;
    return [l, v] as const;
  };
  const consts = [c(Math.SQRT1_2), c(-4), c(4), c(0.5), c(1), ...ERF_ALPHA.map(c), ...ERF_BETA.map(c)];
  const [S, LO, HI, HALF, ONE] = consts.map(([l]) => l) as [number, number, number, number, number];
  const alpha = consts.slice(5, 5 + ERF_ALPHA.length).map(([l]) => l);
  const beta = consts.slice(5 + ERF_ALPHA.length).map(([l]) => l);
  const [vx, z, z2, pv, vc] = [next, next + 1, next + 2, next + 3, next + 4];
  const b = new Body();
  for (const [l, v] of consts) splatConst(b, l, v);
  b.get(nvec).i32(16).op(OP.i32Mul).set(end);
  forLoop(b, i, end, 16, () => {
    b.get(x)
      .get(i)
      .op(OP.i32Add)
      .simd(SIMD.load, ...Body.mem(2, 0))
      .set(vx);
    b.get(vx).get(S).simd(SIMD.f32x4Mul).get(LO).simd(SIMD.f32x4Max).get(HI).simd(SIMD.f32x4Min).set(z);
    b.get(z).get(z).simd(SIMD.f32x4Mul).set(z2);
    horner(b, z2, alpha);
    b.get(z).simd(SIMD.f32x4Mul).set(pv);
    b.get(pv);
    horner(b, z2, beta);
    b.simd(SIMD.f32x4Div); // erf
    b.get(ONE).simd(SIMD.f32x4Add).get(HALF).simd(SIMD.f32x4Mul).set(vc);
    b.get(cdf)
      .get(i)
      .op(OP.i32Add)
      .get(vc)
      .simd(SIMD.store, ...Body.mem(2, 0));
    b.get(y)
      .get(i)
      .op(OP.i32Add)
      .get(vx)
      .get(vc)
      .simd(SIMD.f32x4Mul)
      .simd(SIMD.store, ...Body.mem(2, 0));
  });
  b.op(OP.end);
  return {
    name: 'gelu',
    params: [I32, I32, I32, I32],
    locals: [
      [2, I32],
      [next + 5 - 6, V128],
    ],
    body: b,
  };
}

/** geluGrad(dy, x, cdf, dx, nvec): dx = dy * (cdf + x * exp(-x^2/2) / sqrt(2 pi)) for 4*nvec floats. */
function geluBackward(): FnDef {
  const [dy, x, cdf, dx, nvec] = [0, 1, 2, 3, 4];
  const [i, end] = [5, 6];
  let next = 7;
  const c = (v: number) => {
    const l = next++;
    return [l, v] as const;
  };
  const consts = [
    c(-0.5),
    c(-87),
    c(Math.LOG2E),
    c(LN2_HI),
    c(LN2_LO),
    c(1),
    c(1 / Math.sqrt(2 * Math.PI)),
    ...EXP_P.map(c),
  ];
  const [NHALF, FLOOR, LOG2E, HI, LO, ONE, INV] = consts.map(([l]) => l) as number[] as [
    number,
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  const poly = consts.slice(7).map(([l]) => l);
  const [vx, t, k, r, e] = [next, next + 1, next + 2, next + 3, next + 4];
  const b = new Body();
  for (const [l, v] of consts) splatConst(b, l, v);
  b.get(nvec).i32(16).op(OP.i32Mul).set(end);
  forLoop(b, i, end, 16, () => {
    b.get(x)
      .get(i)
      .op(OP.i32Add)
      .simd(SIMD.load, ...Body.mem(2, 0))
      .set(vx);
    // t = max(-x^2/2, -87); k = nearest(t log2 e); r = t - k ln2
    b.get(vx)
      .get(vx)
      .simd(SIMD.f32x4Mul)
      .get(NHALF)
      .simd(SIMD.f32x4Mul)
      .get(FLOOR)
      .simd(SIMD.f32x4Max)
      .set(t);
    b.get(t).get(LOG2E).simd(SIMD.f32x4Mul).simd(SIMD.f32x4Nearest).set(k);
    b.get(t).get(k).get(HI).simd(SIMD.f32x4Mul).simd(SIMD.f32x4Sub);
    b.get(k).get(LO).simd(SIMD.f32x4Mul).simd(SIMD.f32x4Sub).set(r);
    // e = (r^2 P(r) + r + 1) * 2^k
    horner(b, r, poly);
    b.get(r)
      .get(r)
      .simd(SIMD.f32x4Mul)
      .simd(SIMD.f32x4Mul)
      .get(r)
      .simd(SIMD.f32x4Add)
      .get(ONE)
      .simd(SIMD.f32x4Add);
    b.get(k).simd(SIMD.i32x4TruncSatF32x4S).i32(127).simd(SIMD.i32x4Splat).simd(SIMD.i32x4Add);
    b.i32(23).simd(SIMD.i32x4Shl).simd(SIMD.f32x4Mul).set(e);
    // dx = dy * (cdf + (x / sqrt(2 pi)) * e)
    b.get(dx).get(i).op(OP.i32Add);
    b.get(dy)
      .get(i)
      .op(OP.i32Add)
      .simd(SIMD.load, ...Body.mem(2, 0));
    b.get(cdf)
      .get(i)
      .op(OP.i32Add)
      .simd(SIMD.load, ...Body.mem(2, 0));
    b.get(vx).get(INV).simd(SIMD.f32x4Mul).get(e).simd(SIMD.f32x4Mul).simd(SIMD.f32x4Add);
    b.simd(SIMD.f32x4Mul).simd(SIMD.store, ...Body.mem(2, 0));
  });
  b.op(OP.end);
  return {
    name: 'geluGrad',
    params: [I32, I32, I32, I32, I32],
    locals: [
      [2, I32],
      [next + 5 - 7, V128],
    ],
    body: b,
  };
}

function section(id: number, payload: number[]): number[] {
  return [id, ...uleb(payload.length), ...payload];
}

function vec(items: number[][]): number[] {
  return [...uleb(items.length), ...items.flat()];
}

function name(s: string): number[] {
  const bytes = [...new TextEncoder().encode(s)];
  return [...uleb(bytes.length), ...bytes];
}

/** The module's bytes: imports env.memory, exports pack, pack8 and k1..kMR. */
export function gemmModuleBytes(fma: boolean, mr: number): Uint8Array {
  const fns = [pack(), pack8(), adamw(), colsum(), rowsum(), geluForward(), geluBackward()];
  for (let r = 1; r <= mr; r++) fns.push(kernel(r, fma));
  const sigs = [...new Set(fns.map((f) => f.params.join(',')))];
  const types = sigs.map((sig) => {
    const ps = sig.split(',').map(Number);
    return [0x60, ...uleb(ps.length), ...ps, 0];
  });
  const bytes = [
    0x00,
    0x61,
    0x73,
    0x6d,
    0x01,
    0x00,
    0x00,
    0x00,
    ...section(1, vec(types)),
    ...section(2, vec([[...name('env'), ...name('memory'), 0x02, 0x00, 0x00]])),
    ...section(3, vec(fns.map((f) => uleb(sigs.indexOf(f.params.join(',')))))),
    ...section(7, vec(fns.map((f, i) => [...name(f.name), 0x00, ...uleb(i)]))),
    ...section(
      10,
      vec(
        fns.map((f) => {
          const body = [...vec(f.locals.map(([count, type]) => [...uleb(count), type])), ...f.body.code];
          return [...uleb(body.length), ...body];
        }),
      ),
    ),
  ];
  return new Uint8Array(bytes);
}

/** enableRelaxedSimd's decision (undefined before it runs: then whatever validates). */
let relaxedSimd: boolean | undefined;

type Exports = {
  adamw: (...args: number[]) => void;
  gelu: (x: number, y: number, cdf: number, nvec: number) => void;
  geluGrad: (dy: number, x: number, cdf: number, dx: number, nvec: number) => void;
  colsum: (src: number, dst: number, rows: number, cols: number, scale: number) => void;
  rowsum: (src: number, dst: number, rows: number, cols: number, scale: number) => void;
  pack: (src: number, cs: number, ks: number, dst: number, kc: number, n: number, w: number) => void;
  pack8: (src: number, ks: number, dst: number, kc: number) => void;
  [k: `k${number}`]: (ap: number, bp: number, c: number, ldc: number, kc: number, acc: number) => void;
};

/** Operand layout of one product: element (i, k) of A and (k, j) of B, as tfjs's transpose flags say. */
export interface GemmArgs {
  a: number; // byte address of A (of batch 0)
  b: number;
  c: number;
  m: number;
  n: number;
  k: number;
  transA: boolean;
  transB: boolean;
  /** C already holds values to add to (e.g. the bias); otherwise it is overwritten */
  accumulate: boolean;
}

const KC = 256;

/** Scratch space on the heap, grown on demand. */
export interface Scratch {
  ptr: number;
  bytes: number;
}

/** A GEMM bound to one WasmMemory (tfjs-wasm's heap). */
export class WasmGemm {
  readonly mr: number;
  readonly x: Exports;
  private readonly kernels: Exports[`k${number}`][] = [];
  private readonly packedA: Scratch = { ptr: 0, bytes: 0 };
  private readonly packedB: Scratch = { ptr: 0, bytes: 0 };
  /** 4 vectors for the tails of element-wise kernels */
  readonly tail: Scratch = { ptr: 0, bytes: 0 };
  /** a padded C for products whose width is not a multiple of 8 */
  readonly padC: Scratch = { ptr: 0, bytes: 0 };

  constructor(
    memory: WasmMemory,
    readonly fma: boolean,
    private readonly malloc: (bytes: number) => number,
    private readonly free: (ptr: number) => void,
  ) {
    this.mr = fma ? 6 : 5;
    const mod = new WA.Module(gemmModuleBytes(fma, this.mr));
    this.x = new WA.Instance(mod, { env: { memory } }).exports as unknown as Exports;
    for (let r = 0; r <= this.mr; r++)
      this.kernels.push(this.x[`k${Math.max(1, r)}`] as Exports[`k${number}`]);
  }

  /** A scratch buffer of at least `bytes` (16-byte aligned); may move it. */
  scratch(s: Scratch, bytes: number): number {
    if (s.bytes < bytes) {
      if (s.ptr) this.free(s.ptr);
      s.bytes = Math.max(bytes, Math.ceil(s.bytes * 1.5));
      s.ptr = this.malloc(s.bytes + 16);
    }
    return (s.ptr + 15) & ~15;
  }

  /** C [m x ldcCols] = A . B for one product; C's row stride is `ldc` floats (>= n rounded up to 8). */
  run(g: GemmArgs, ldc: number): void {
    const { m, n, k } = g;
    const mr = this.mr;
    const panels = Math.ceil(n / 8);
    const kcMax = Math.min(KC, k);
    const bp = this.scratch(this.packedB, panels * kcMax * 32);
    const ap = this.scratch(this.packedA, mr * kcMax * 4);
    // strides in bytes: A(i, kk) at a + i*aI + kk*aK; B(kk, j) at b + kk*bK + j*bJ
    const aI = g.transA ? 4 : k * 4;
    const aK = g.transA ? m * 4 : 4;
    const bK = g.transB ? 4 : n * 4;
    const bJ = g.transB ? k * 4 : 4;
    const ldcBytes = ldc * 4;
    if (k === 0) return;
    for (let k0 = 0; k0 < k; k0 += KC) {
      const kc = Math.min(KC, k - k0);
      const acc = g.accumulate || k0 > 0 ? 1 : 0;
      for (let p = 0; p < panels; p++) {
        const j = p * 8;
        const src = g.b + k0 * bK + j * bJ;
        const dst = bp + p * kc * 32;
        if (!g.transB && j + 8 <= n) this.x.pack8(src, bK, dst, kc);
        else this.x.pack(src, bJ, bK, dst, kc, Math.min(8, n - j), 8);
      }
      for (let i = 0; i < m; i += mr) {
        const rows = Math.min(mr, m - i);
        this.x.pack(g.a + i * aI + k0 * aK, aI, aK, ap, kc, rows, rows);
        const kern = this.kernels[rows] as Exports[`k${number}`];
        const cRow = g.c + i * ldcBytes;
        for (let p = 0; p < panels; p++) kern(ap, bp + p * kc * 32, cRow + p * 32, ldcBytes, kc, acc);
      }
    }
  }

  dispose(): void {
    for (const s of [this.packedA, this.packedB, this.padC, this.tail]) {
      if (s.ptr) this.free(s.ptr);
      s.ptr = 0;
      s.bytes = 0;
    }
  }
}

/**
 * Decides whether the GEMM uses relaxed SIMD's fused multiply-add: yes when this WebAssembly validates it, after
 * switching it on in Node 20 (`--experimental-wasm-relaxed-simd`; Node 22+, Chromium and Electron have it by
 * default); no when DIGPT_RELAXED_SIMD=0 (for comparisons). Call before the first product; the answer says why.
 */
export function enableRelaxedSimd(): Promise<{ fma: boolean; why: string }> {
  decision ??= decideRelaxedSimd();
  return decision;
}
let decision: Promise<{ fma: boolean; why: string }> | undefined;

async function decideRelaxedSimd(): Promise<{ fma: boolean; why: string }> {
  const proc = (
    globalThis as { process?: { versions?: { node?: string }; env?: Record<string, string | undefined> } }
  ).process;
  const decide = (fma: boolean, why: string) => {
    relaxedSimd = fma;
    return { fma, why };
  };
  if (proc?.env?.['DIGPT_RELAXED_SIMD'] === '0')
    return decide(false, 'relaxed SIMD off by DIGPT_RELAXED_SIMD=0');
  const probe = gemmModuleBytes(true, 1);
  if (WA.validate(probe)) return decide(true, 'relaxed SIMD available');
  if (proc?.versions?.node) {
    try {
      const v8 = await import('node:v8');
      v8.setFlagsFromString('--experimental-wasm-relaxed-simd');
    } catch {
      // not settable here: fall through
    }
    if (WA.validate(probe))
      return decide(true, 'relaxed SIMD switched on with --experimental-wasm-relaxed-simd');
  }
  return decide(false, 'this WebAssembly engine has no relaxed SIMD');
}

// ---- tfjs-backend-wasm kernels: BatchMatMul and _FusedMatMul (bias, no activation) on the GEMM above ----

interface WasmModuleLike {
  asm: { memory: WasmMemory };
  _malloc: (bytes: number) => number;
  _free: (ptr: number) => void;
}
interface BackendLike {
  wasm: WasmModuleLike;
  dataIdMap: { get: (id: object) => { memoryOffset: number } };
  makeOutput: (shape: number[], dtype: 'float32') => TensorInfoLike;
}
interface TensorInfoLike {
  dataId: object;
  shape: number[];
  dtype: string;
}

const gemms = new WeakMap<object, WasmGemm>();

/** The GEMM of a wasm backend (built on first use; fused multiply-add when relaxed SIMD validates). */
export function gemmFor(backend: BackendLike): WasmGemm {
  let g = gemms.get(backend);
  if (!g) {
    relaxedSimd ??= WA.validate(gemmModuleBytes(true, 1));
    const w = backend.wasm;
    g = new WasmGemm(
      w.asm.memory,
      relaxedSimd,
      (n) => w._malloc(n),
      (p) => w._free(p),
    );
    gemms.set(backend, g);
  }
  return g;
}

function size(shape: readonly number[]): number {
  return shape.reduce((s, d) => s * d, 1);
}

/**
 * out = a @ b (+ bias) with tfjs's shapes and flags: a [..., M, K] (or [..., K, M] transposed), b likewise, batch
 * dimensions equal or one side without any; returns null when this case is not covered (the caller falls back).
 */
export function gemmMatMul(
  backend: BackendLike,
  a: TensorInfoLike,
  b: TensorInfoLike,
  transA: boolean,
  transB: boolean,
  bias: TensorInfoLike | null,
): TensorInfoLike | null {
  if (a.dtype !== 'float32' || b.dtype !== 'float32' || a.shape.length < 2 || b.shape.length < 2) return null;
  const ra = a.shape.length;
  const rb = b.shape.length;
  const m = (transA ? a.shape[ra - 1] : a.shape[ra - 2]) as number;
  const k = (transA ? a.shape[ra - 2] : a.shape[ra - 1]) as number;
  const kb = (transB ? b.shape[rb - 1] : b.shape[rb - 2]) as number;
  const n = (transB ? b.shape[rb - 2] : b.shape[rb - 1]) as number;
  if (k !== kb) return null;
  const outerA = a.shape.slice(0, -2);
  const outerB = b.shape.slice(0, -2);
  const batchA = size(outerA);
  const batchB = size(outerB);
  let outer: number[];
  if (batchB === 1 && outerB.length <= outerA.length) outer = outerA;
  else if (batchA === 1 && outerA.length <= outerB.length) outer = outerB;
  else if (outerA.length === outerB.length && outerA.every((d, i) => d === outerB[i])) outer = outerA;
  else return null;
  if (
    bias &&
    (bias.dtype !== 'float32' || bias.shape.length !== 1 || (bias.shape[0] !== n && bias.shape[0] !== 1))
  )
    return null;
  const batch = Math.max(batchA, batchB);
  const g = gemmFor(backend);
  const out = backend.makeOutput([...outer, m, n], 'float32');
  if (batch === 0 || m === 0 || n === 0) return out;
  const offset = (t: TensorInfoLike) => backend.dataIdMap.get(t.dataId).memoryOffset;
  if (k === 0) {
    // an empty sum: zeros, plus the bias if there is one
    const view = new Float32Array(backend.wasm.asm.memory.buffer, offset(out), batch * m * n);
    if (bias)
      fillRows(
        view,
        new Float32Array(backend.wasm.asm.memory.buffer, offset(bias), bias.shape[0]).slice(),
        n,
        n,
        batch * m,
      );
    else view.fill(0);
    return out;
  }
  const outPtr = offset(out);
  const ldc = n % 8 === 0 ? n : Math.ceil(n / 8) * 8;
  // C: the output itself when its rows are whole panels, else a padded scratch matrix per product
  const padded = ldc !== n;
  const cPtr = padded ? g.scratch(g.padC, m * ldc * 4) : outPtr;
  const memory = backend.wasm.asm.memory;
  const biasVals = bias ? new Float32Array(memory.buffer, offset(bias), bias.shape[0]).slice() : null;
  for (let i = 0; i < batch; i++) {
    const c = padded ? cPtr : outPtr + i * m * n * 4;
    if (biasVals) fillRows(new Float32Array(memory.buffer, c, m * ldc), biasVals, n, ldc, m);
    g.run(
      {
        a: offset(a) + (batchA === 1 ? 0 : i * m * k * 4),
        b: offset(b) + (batchB === 1 ? 0 : i * k * n * 4),
        c,
        m,
        n,
        k,
        transA,
        transB,
        accumulate: biasVals !== null,
      },
      ldc,
    );
    if (padded) {
      const h = new Float32Array(memory.buffer);
      const src = cPtr / 4;
      const dst = outPtr / 4 + i * m * n;
      for (let r = 0; r < m; r++) h.copyWithin(dst + r * n, src + r * ldc, src + r * ldc + n);
    }
  }
  return out;
}

/** rows of `view` (stride ldc) = bias (length n, or 1 broadcast), by doubling copies. */
function fillRows(view: Float32Array, bias: Float32Array, n: number, ldc: number, m: number): void {
  if (bias.length === 1) view.subarray(0, n).fill(bias[0] as number);
  else view.set(bias);
  if (ldc === n) {
    let filled = 1;
    while (filled < m) {
      const c = Math.min(filled, m - filled);
      view.copyWithin(filled * n, 0, c * n);
      filled += c;
    }
  } else for (let r = 1; r < m; r++) view.copyWithin(r * ldc, 0, n);
}

/** The scalars of one AdamW update (see `adamw` above); the kernel below takes them as attributes. */
export interface AdamWScalars {
  beta1: number;
  beta2: number;
  bc2Sqrt: number;
  eps: number;
  decay: number;
  stepSize: number;
}

/** One AdamW update of p with gradient g and moments m, v: new [p, m, v] (float32, same shape), or null if uncovered. */
export function gemmAdamW(
  backend: BackendLike,
  p: TensorInfoLike,
  g: TensorInfoLike,
  m: TensorInfoLike,
  v: TensorInfoLike,
  s: AdamWScalars,
): TensorInfoLike[] | null {
  const n = size(p.shape);
  for (const t of [g, m, v]) if (size(t.shape) !== n || t.dtype !== 'float32') return null;
  if (p.dtype !== 'float32') return null;
  const x = gemmFor(backend).x;
  const outs = [p, m, v].map((t) => backend.makeOutput([...t.shape], 'float32'));
  const off = (t: TensorInfoLike) => backend.dataIdMap.get(t.dataId).memoryOffset;
  x.adamw(
    off(p),
    off(g),
    off(m),
    off(v),
    ...outs.map(off),
    n,
    s.beta1,
    1 - s.beta1,
    s.beta2,
    1 - s.beta2,
    s.bc2Sqrt,
    s.eps,
    s.decay,
    s.stepSize,
  );
  return outs;
}

/**
 * Sum (scale 1) or mean over `axes` of x when they are the leading or the trailing axes (a column or a row
 * reduction of x seen as a matrix); null otherwise (the caller falls back). The output has tfjs's shape.
 */
export function gemmReduce(
  backend: BackendLike,
  x: TensorInfoLike,
  axes: readonly number[],
  keepDims: boolean,
  mean: boolean,
): TensorInfoLike | null {
  if (x.dtype !== 'float32') return null;
  const rank = x.shape.length;
  const sorted = [...new Set(axes.map((a) => (a < 0 ? a + rank : a)))].sort((a, b) => a - b);
  if (
    sorted.length === 0 ||
    sorted.some((a, i) => a < 0 || a >= rank || (i > 0 && a !== (sorted[i - 1] as number) + 1))
  )
    return null;
  const leading = sorted[0] === 0;
  const trailing = sorted[sorted.length - 1] === rank - 1;
  if (!leading && !trailing) return null;
  const reduced = size(sorted.map((a) => x.shape[a] as number));
  const kept = size(x.shape) / Math.max(reduced, 1);
  if (reduced === 0 || kept === 0 || size(x.shape) === 0) return null;
  const outShape = keepDims
    ? x.shape.map((d, a) => (sorted.includes(a) ? 1 : d))
    : x.shape.filter((_, a) => !sorted.includes(a));
  const fns = gemmFor(backend).x;
  const out = backend.makeOutput(outShape, 'float32');
  const off = (t: TensorInfoLike) => backend.dataIdMap.get(t.dataId).memoryOffset;
  const scale = mean ? 1 / reduced : 1;
  // when the axes are all of x both readings hold; the row reduction is the cheaper one
  if (trailing) fns.rowsum(off(x), off(out), kept, reduced, scale);
  else fns.colsum(off(x), off(out), reduced, kept, scale);
  return out;
}

/**
 * Runs an element-wise kernel f(addresses..., nvec) over n floats: whole vectors in place, the last n % 4 through a
 * scratch area (`ins` are copied in, `outs` back).
 */
function elementwise(
  backend: BackendLike,
  ptrs: number[],
  outs: number[],
  n: number,
  f: (addrs: number[], nvec: number) => void,
): void {
  const nvec = Math.floor(n / 4);
  if (nvec > 0) f(ptrs, nvec);
  const rest = n - 4 * nvec;
  if (rest === 0) return;
  const g = gemmFor(backend);
  const tmp = g.scratch(g.tail, ptrs.length * 16);
  const h = new Float32Array(backend.wasm.asm.memory.buffer);
  const slots = ptrs.map((_, j) => tmp + 16 * j);
  ptrs.forEach((p, j) => {
    const at = (slots[j] as number) / 4;
    h.fill(0, at, at + 4);
    if (!outs.includes(j)) h.set(h.subarray(p / 4 + 4 * nvec, p / 4 + n), at);
  });
  f(slots, 1);
  for (const j of outs)
    h.set(
      h.subarray((slots[j] as number) / 4, (slots[j] as number) / 4 + rest),
      (ptrs[j] as number) / 4 + 4 * nvec,
    );
}

/** PyTorch's exact GELU of x: [y, cdf] with cdf = 0.5 * (1 + erf(x / sqrt 2)), y = x * cdf. */
export function gemmGelu(backend: BackendLike, x: TensorInfoLike): TensorInfoLike[] {
  const fns = gemmFor(backend).x;
  const outs = [backend.makeOutput([...x.shape], 'float32'), backend.makeOutput([...x.shape], 'float32')];
  const off = (t: TensorInfoLike) => backend.dataIdMap.get(t.dataId).memoryOffset;
  elementwise(backend, [off(x), ...outs.map(off)], [1, 2], size(x.shape), ([a, b, c], nvec) =>
    fns.gelu(a as number, b as number, c as number, nvec),
  );
  return outs;
}

/** GELU's backward: dy * (cdf + x * exp(-x^2 / 2) / sqrt(2 pi)). */
export function gemmGeluGrad(
  backend: BackendLike,
  dy: TensorInfoLike,
  x: TensorInfoLike,
  cdf: TensorInfoLike,
): TensorInfoLike {
  const fns = gemmFor(backend).x;
  const out = backend.makeOutput([...x.shape], 'float32');
  const off = (t: TensorInfoLike) => backend.dataIdMap.get(t.dataId).memoryOffset;
  elementwise(backend, [off(dy), off(x), off(cdf), off(out)], [3], size(x.shape), ([a, b, c, d], nvec) =>
    fns.geluGrad(a as number, b as number, c as number, d as number, nvec),
  );
  return out;
}
