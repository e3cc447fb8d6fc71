// Transformer pieces shared by the student encoder, the decoders and the classifier (timm/MAE names and semantics).
import * as tf from '@tensorflow/tfjs-core';
import { crossAttentionCore, gelu, layerNorm, linear, selfAttentionCore } from '../ops/nn.js';
import { linearSpecs, normSpecs, type ParamSet, type ParamSpec } from './params.js';

type T2 = tf.Tensor2D;
type T1 = tf.Tensor1D;

/** Activations are [rows, width] matrices; rows are grouped by sample, `batch` samples of rows/batch tokens. */
export interface Rows {
  readonly x: T2;
  readonly batch: number;
}

export function w2(ps: ParamSet, name: string): T2 {
  return ps.get(name) as tf.Tensor as T2;
}
export function w1(ps: ParamSet, name: string): T1 {
  return ps.get(name) as tf.Tensor as T1;
}

export function dense(ps: ParamSet, prefix: string, x: T2): T2 {
  return linear(
    x,
    w2(ps, `${prefix}.weight`),
    ps.has(`${prefix}.bias`) ? w1(ps, `${prefix}.bias`) : undefined,
  );
}

export function norm(ps: ParamSet, prefix: string, x: T2, eps: number): T2 {
  return layerNorm(x, w1(ps, `${prefix}.weight`), w1(ps, `${prefix}.bias`), eps);
}

/** timm Block parameters: norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2. */
export function blockSpecs(prefix: string, dim: number, mlpRatio: number): ParamSpec[] {
  const hidden = Math.floor(dim * mlpRatio);
  return [
    ...normSpecs(`${prefix}.norm1`, dim),
    ...linearSpecs(`${prefix}.attn.qkv`, dim, 3 * dim),
    ...linearSpecs(`${prefix}.attn.proj`, dim, dim),
    ...normSpecs(`${prefix}.norm2`, dim),
    ...linearSpecs(`${prefix}.mlp.fc1`, dim, hidden),
    ...linearSpecs(`${prefix}.mlp.fc2`, hidden, dim),
  ];
}

/** MAE decoder block (self-attention, cross-attention to a memory, MLP). */
export function decoderBlockSpecs(prefix: string, dim: number, mlpRatio: number): ParamSpec[] {
  const hidden = Math.floor(dim * mlpRatio);
  return [
    ...normSpecs(`${prefix}.norm1`, dim),
    ...linearSpecs(`${prefix}.attn1.qkv`, dim, 3 * dim),
    ...linearSpecs(`${prefix}.attn1.proj`, dim, dim),
    ...normSpecs(`${prefix}.norm2_1`, dim),
    ...normSpecs(`${prefix}.norm2_2`, dim),
    ...linearSpecs(`${prefix}.attn2.q`, dim, dim),
    ...linearSpecs(`${prefix}.attn2.kv`, dim, 2 * dim),
    ...linearSpecs(`${prefix}.attn2.proj`, dim, dim),
    ...normSpecs(`${prefix}.norm2`, dim),
    ...linearSpecs(`${prefix}.mlp.fc1`, dim, hidden),
    ...linearSpecs(`${prefix}.mlp.fc2`, hidden, dim),
  ];
}

/** Self-attention of rows x [B*N, C] with a fused qkv Linear. */
export function selfAttention(
  ps: ParamSet,
  prefix: string,
  x: T2,
  batch: number,
  heads: number,
  mask: T2 | null,
): T2 {
  const qkv = dense(ps, `${prefix}.qkv`, x); // [B*N, 3C], columns q | k | v
  return dense(ps, `${prefix}.proj`, selfAttentionCore(qkv, batch, heads, mask));
}

/** Cross-attention: queries from x [B*N, C], keys and values from memory [B*M, C]. */
export function crossAttention(
  ps: ParamSet,
  prefix: string,
  x: T2,
  memory: T2,
  batch: number,
  heads: number,
  mask: T2 | null,
): T2 {
  const q = dense(ps, `${prefix}.q`, x);
  const kv = dense(ps, `${prefix}.kv`, memory); // [B*M, 2C], columns k | v
  return dense(ps, `${prefix}.proj`, crossAttentionCore(q, kv, batch, heads, mask));
}

export function mlp(ps: ParamSet, prefix: string, x: T2): T2 {
  return dense(ps, `${prefix}.fc2`, gelu(dense(ps, `${prefix}.fc1`, x)) as T2);
}

/**
 * Pre-LN ViT block: x += attn(norm1(x)); x += mlp(norm2(x)). `keep` (optional, [B*N, 1]) scales each sample's residual
 * branches for drop path (0 or 1/keep_prob per sample).
 */
export function vitBlock(
  ps: ParamSet,
  prefix: string,
  x: T2,
  batch: number,
  heads: number,
  mask: T2 | null,
  eps: number,
  keep: T2 | null = null,
): T2 {
  let a = selfAttention(ps, `${prefix}.attn`, norm(ps, `${prefix}.norm1`, x, eps), batch, heads, mask);
  if (keep) a = tf.mul(a, keep);
  const h = tf.add(x, a) as T2;
  let m = mlp(ps, `${prefix}.mlp`, norm(ps, `${prefix}.norm2`, h, eps));
  if (keep) m = tf.mul(m, keep);
  return tf.add(h, m);
}

/** MAE decoder block: q += SelfAttn(LN1(q)); q += CrossAttn(LN2_1(q), LN2_2(memory)); q += MLP(LN2(q)). */
export function decoderBlock(
  ps: ParamSet,
  prefix: string,
  q: T2,
  memory: T2,
  batch: number,
  heads: number,
  mask: T2 | null,
  eps: number,
): T2 {
  let h = tf.add(
    q,
    selfAttention(ps, `${prefix}.attn1`, norm(ps, `${prefix}.norm1`, q, eps), batch, heads, mask),
  ) as T2;
  const kv = norm(ps, `${prefix}.norm2_2`, memory, eps);
  h = tf.add(
    h,
    crossAttention(ps, `${prefix}.attn2`, norm(ps, `${prefix}.norm2_1`, h, eps), kv, batch, heads, mask),
  ) as T2;
  return tf.add(h, mlp(ps, `${prefix}.mlp`, norm(ps, `${prefix}.norm2`, h, eps)));
}

/**
 * Images NHWC [B, H, W, 3] -> patch rows [B*G*G, p*p*3] in raster order of patches, each patch flattened (kh, kw, c)
 * to match the conv kernel kept as [kh*kw*in, out].
 */
export function patchify(images: tf.Tensor4D, patch: number): T2 {
  const [b, h, w, c] = images.shape;
  const gh = h / patch;
  const gw = w / patch;
  // [B, H, W, 3] -> [B, gh, p, gw, p, 3] -> [B, gh, gw, p, p, 3] -> [B*gh*gw, p*p*3]
  const x = tf.reshape(images, [b, gh, patch, gw, patch, c]);
  return tf.reshape(tf.transpose(x, [0, 1, 3, 2, 4, 5]), [b * gh * gw, patch * patch * c]) as T2;
}
