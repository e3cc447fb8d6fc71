// The D-iGPT pretraining model: student ViT over clusters of patches in a random order, generative and discriminative decoders.
import * as tf from '@tensorflow/tfjs-core';
import { digptGeometry, type DigptConfig, type DigptGeometry } from '../config.js';
import { constLeft, layerNorm, linear, permuteRows } from '../ops/nn.js';
import {
  blockSpecs,
  decoderBlock,
  decoderBlockSpecs,
  dense,
  norm,
  patchify,
  vitBlock,
  w1,
  w2,
} from './blocks.js';
import { bilinearMatrix, clusterMask, clusterTable, invertPermutation, sincos2d } from './geometry.js';
import { linearSpecs, normSpecs, ParamSet, plainSpec, spec, type ParamSpec } from './params.js';

type T2 = tf.Tensor2D;

/** Which decoders are trained: both (the paper), only the generative one, or only the discriminative one. */
export type DigptObjective = 'digpt' | 'gen-only' | 'dis-only';

/** The two decoders, by their role (the official code calls them ar_ and kd_; see naming.ts for its quirk). */
export type DecoderRole = 'gen' | 'dis';

export function decoderRoles(objective: DigptObjective): DecoderRole[] {
  return objective === 'digpt' ? ['gen', 'dis'] : objective === 'gen-only' ? ['gen'] : ['dis'];
}

/** One training batch. Images are NHWC and already normalised for the student. */
export interface DigptBatch {
  /** [B, H, W, 3]. */
  readonly images: tf.Tensor4D;
  /** Teacher tokens [B, 1 + tg*tg, Dt], cls first (the teacher's layout). */
  readonly teacher: tf.Tensor3D;
  /** Cluster order per sample, [B*K] row-major: position i of sample b holds cluster order[b*K + i]. */
  readonly order: Int32Array;
}

export interface DecoderOutput {
  /** Mean of 2 - 2 cos over all target tokens. */
  readonly loss: tf.Scalar;
  /** Predictions [B, N+1, Dt] before the bilinear resize (cls last). */
  readonly pred: tf.Tensor3D;
  /** Mean 2 - 2 cos per predicted cluster, [B, K-1] in sequence order (the cls token is left out). */
  readonly clusterError: tf.Tensor2D;
  /** Mean cosine between prediction and target over all tokens (teacher agreement). */
  readonly agreement: tf.Scalar;
}

export interface DigptOutput {
  /** Sum of the decoders' losses. */
  readonly loss: tf.Scalar;
  /** Last encoder block's output [B, N+1, C], cls last. */
  readonly encoderOut: tf.Tensor3D;
  readonly gen?: DecoderOutput;
  readonly dis?: DecoderOutput;
}

/** Canonical parameter list of a D-iGPT model. */
export function digptSpecs(c: DigptConfig, objective: DigptObjective = 'digpt'): ParamSpec[] {
  const C = c.embed_dim;
  const D = c.dec_dim;
  const specs: ParamSpec[] = [
    spec('patch_embed.proj.weight', [C, 3, c.patch_size, c.patch_size], { kind: 'conv' }, { kind: 'xavier' }),
    plainSpec('patch_embed.proj.bias', [C], { kind: 'zeros' }),
    plainSpec('cls_token', [1, 1, C], { kind: 'normal', std: 0.02 }),
  ];
  for (let i = 0; i < c.depth; i++) specs.push(...blockSpecs(`blocks.${i}`, C, c.mlp_ratio));
  for (const r of decoderRoles(objective)) {
    specs.push(...normSpecs(`${r}_tap_norm`, C));
    specs.push(
      ...linearSpecs(`${r}_enc2dec`, c.taps.length * C, c.dec_depth * D, true, {
        kind: 'interleaved',
        depth: c.dec_depth,
      }),
    );
    specs.push(plainSpec(`${r}_token`, [1, 1, D], { kind: 'normal', std: 0.02 }));
    for (let l = 0; l < c.dec_depth; l++)
      specs.push(...decoderBlockSpecs(`${r}_blocks.${l}`, D, c.mlp_ratio));
    specs.push(...normSpecs(`${r}_norm`, D));
    specs.push(...linearSpecs(`${r}_pred`, D, c.teacher_dim));
  }
  return specs;
}

/** Constant tensors built once per model: position tables, the mask, the resize map. */
interface Constants {
  /** Student sin-cos table [G*G, C] (the cls slot, zeros, is not needed). */
  readonly pos: T2;
  /** Decoder sin-cos table [1 + G*G, D]: row 0 is the cls slot (zeros). */
  readonly decPos: T2;
  /** Additive block-causal mask [N+1, N+1]. */
  readonly mask: T2;
  /** Bilinear map [ts*ts, s*s] and its transpose; null when s == ts. */
  readonly resize: { readonly r: T2; readonly rT: T2 } | null;
}

export class DigptModel {
  readonly config: DigptConfig;
  readonly geometry: DigptGeometry;
  readonly objective: DigptObjective;
  readonly params: ParamSet;
  private readonly consts: Constants;
  private readonly studentClusters: Int32Array[];
  private readonly teacherClusters: Int32Array[];

  constructor(config: DigptConfig, opts: { seed?: number; objective?: DigptObjective } = {}) {
    this.config = config;
    this.objective = opts.objective ?? 'digpt';
    this.geometry = digptGeometry(config);
    const g = this.geometry;
    // --- parameters ---
    this.params = new ParamSet(digptSpecs(config, this.objective), opts.seed ?? 0);
    // --- constants ---
    this.studentClusters = clusterTable(g.grid, config.clusters_per_side);
    this.teacherClusters = clusterTable(config.teacher_grid, config.clusters_per_side);
    const pos = sincos2d(config.embed_dim, g.grid, false);
    const decPos = sincos2d(config.dec_dim, g.grid, true);
    const resize =
      g.side === g.tside
        ? null
        : tf.tidy(() => {
            const r = tf.tensor2d(bilinearMatrix(g.side, g.tside), [g.tside * g.tside, g.t]);
            return { r: tf.keep(r), rT: tf.keep(tf.transpose(r)) };
          });
    this.consts = {
      pos: tf.tensor2d(pos, [g.grid * g.grid, config.embed_dim]),
      decPos: tf.tensor2d(decPos, [1 + g.grid * g.grid, config.dec_dim]),
      mask: tf.tensor2d(clusterMask(g.k - 1, g.t), [g.n + 1, g.n + 1]),
      resize,
    };
  }

  /** Entries per sample of `DigptBatch.order`: the K clusters (what the trainer's drawOrders must draw). */
  get orderLength(): number {
    return this.geometry.k;
  }

  /** The fixed student position table with its cls row, [1 + G*G, C], as the official `pos_embed` holds it. */
  posEmbedWithCls(): Float32Array {
    return sincos2d(this.config.embed_dim, this.geometry.grid, true);
  }

  /** The fixed decoder position table [1 + G*G, D] (official `decoder_pos_embed`). */
  decoderPosEmbed(): Float32Array {
    return sincos2d(this.config.dec_dim, this.geometry.grid, true);
  }

  /** The mask as a flat (N+1)^2 array of 0 / -Infinity (official `mask`). */
  maskValues(): Float32Array {
    return clusterMask(this.geometry.k - 1, this.geometry.t);
  }

  /** Checks an order array: B rows, each a permutation of 0..K-1. */
  checkOrder(order: Int32Array, batch: number): void {
    const k = this.geometry.k;
    if (order.length !== batch * k)
      throw new Error(`cluster order has ${order.length} entries, expected ${batch} x ${k}`);
    for (let b = 0; b < batch; b++) {
      const seen = new Uint8Array(k);
      for (let i = 0; i < k; i++) {
        const v = order[b * k + i] as number;
        if (!(v >= 0 && v < k) || seen[v])
          throw new Error(`cluster order of sample ${b} is not a permutation of 0..${k - 1}`);
        seen[v] = 1;
      }
    }
  }

  // --- encoder ---

  /** Student tokens in cluster order, visible clusters then cls: [B*(N+1), C]. */
  private embed(images: tf.Tensor4D, order: Int32Array): T2 {
    const c = this.config;
    const g = this.geometry;
    const b = images.shape[0];
    const gg = g.grid * g.grid;
    const C = c.embed_dim;
    let x = dense(this.params, 'patch_embed.proj', patchify(images, c.patch_size)); // [B*G*G, C] raster
    x = tf.reshape(tf.add(tf.reshape(x, [b, gg, C]), this.consts.pos), [b * gg, C]) as T2;
    // raster -> cluster order: row b*GG + i*T + t holds token t of cluster order[b, i]
    const perm = new Int32Array(b * gg);
    for (let s = 0; s < b; s++)
      for (let i = 0; i < g.k; i++) {
        const cl = this.studentClusters[order[s * g.k + i] as number] as Int32Array;
        for (let t = 0; t < g.t; t++) perm[s * gg + i * g.t + t] = s * gg + (cl[t] as number);
      }
    const permT = tf.tensor1d(perm, 'int32');
    const invT = tf.tensor1d(invertPermutation(perm), 'int32');
    x = permuteRows(x, permT, invT);
    // [B, K*T, C] -> the first K-1 clusters [B, N, C]; the last one is never seen
    const visible = tf.slice(tf.reshape(x, [b, g.k * g.t, C]), [0, 0, 0], [b, g.n, C]);
    // cls token appended LAST, plus its position slot (zeros in the sin-cos table)
    const cls = tf.add(tf.zeros([b, 1, C]), this.params.get('cls_token'));
    return tf.reshape(tf.concat([visible, cls], 1), [b * (g.n + 1), C]) as T2;
  }

  /** Encoder blocks; returns the last output and the tapped outputs (in `taps` order). */
  forwardEncoder(images: tf.Tensor4D, order: Int32Array): { out: T2; taps: T2[] } {
    const c = this.config;
    const b = images.shape[0];
    let h = this.embed(images, order);
    const taps: T2[] = [];
    for (let i = 0; i < c.depth; i++) {
      h = vitBlock(this.params, `blocks.${i}`, h, b, c.num_heads, this.consts.mask, c.block_ln_eps);
      if (c.taps.includes(i + 1)) taps.push(h);
    }
    // taps are listed in block order whatever order the config names them
    const ordered = [...c.taps].sort((x, y) => x - y);
    const byBlock = new Map(ordered.map((t, i) => [t, taps[i] as T2]));
    return { out: h, taps: c.taps.map((t) => byBlock.get(t) as T2) };
  }

  // --- decoders ---

  /** Sequence positions (0-based) of the clusters whose tokens a decoder queries / predicts. */
  private selected(role: DecoderRole): number[] {
    const k = this.geometry.k;
    return Array.from({ length: k - 1 }, (_, i) => (role === 'gen' ? i + 1 : i));
  }

  /** Decoder queries: its token + the decoder position of each selected cluster's tokens, then cls. [B*(N+1), D]. */
  private queries(role: DecoderRole, order: Int32Array, b: number): T2 {
    const g = this.geometry;
    const idx = new Int32Array(b * (g.n + 1));
    let o = 0;
    for (let s = 0; s < b; s++) {
      for (const i of this.selected(role)) {
        const cl = this.studentClusters[order[s * g.k + i] as number] as Int32Array;
        for (let t = 0; t < g.t; t++) idx[o++] = 1 + (cl[t] as number);
      }
      idx[o++] = 0; // cls slot
    }
    const pos = tf.gather(this.consts.decPos, tf.tensor1d(idx, 'int32'));
    return tf.add(pos, tf.reshape(this.params.get(`${role}_token`), [1, this.config.dec_dim])) as T2;
  }

  /** Teacher targets for a decoder: the selected clusters' teacher tokens, then teacher cls. [B*rows, Dt]. */
  targets(role: DecoderRole, teacher: tf.Tensor3D, order: Int32Array): T2 {
    const c = this.config;
    const g = this.geometry;
    const b = teacher.shape[0];
    const per = 1 + c.teacher_grid * c.teacher_grid;
    if (teacher.shape[1] !== per || teacher.shape[2] !== c.teacher_dim) {
      throw new Error(
        `teacher tokens have shape [${teacher.shape.join(', ')}], the model expects [B, ${per}, ${c.teacher_dim}] ` +
          `(teacher_grid ${c.teacher_grid}, teacher_dim ${c.teacher_dim})`,
      );
    }
    const ts2 = g.tside * g.tside;
    const idx = new Int32Array(b * ((g.k - 1) * ts2 + 1));
    let o = 0;
    for (let s = 0; s < b; s++) {
      for (const i of this.selected(role)) {
        const cl = this.teacherClusters[order[s * g.k + i] as number] as Int32Array;
        for (let t = 0; t < ts2; t++) idx[o++] = s * per + 1 + (cl[t] as number);
      }
      idx[o++] = s * per;
    }
    return tf.gather(tf.reshape(teacher, [b * per, c.teacher_dim]), tf.tensor1d(idx, 'int32')) as T2;
  }

  /** One decoder from the taps to its predictions [B*(N+1), Dt]. */
  forwardDecoder(role: DecoderRole, taps: T2[], order: Int32Array, b: number): T2 {
    const c = this.config;
    const ps = this.params;
    // one LayerNorm shared by every tap, then one Linear to dec_depth memories
    const normed = taps.map((t) =>
      layerNorm(t, w1(ps, `${role}_tap_norm.weight`), w1(ps, `${role}_tap_norm.bias`), c.tap_ln_eps),
    );
    const cat = normed.length === 1 ? (normed[0] as T2) : (tf.concat(normed, 1) as T2);
    // memory columns are kept layer-major (see Layout 'interleaved'): layer l is columns l*D .. (l+1)*D
    const memory = linear(cat, w2(ps, `${role}_enc2dec.weight`), w1(ps, `${role}_enc2dec.bias`));
    const memories = c.dec_depth === 1 ? [memory] : (tf.split(memory, c.dec_depth, 1) as T2[]);
    let q = this.queries(role, order, b);
    for (let l = 0; l < c.dec_depth; l++) {
      q = decoderBlock(
        ps,
        `${role}_blocks.${l}`,
        q,
        memories[l] as T2,
        b,
        c.dec_heads,
        this.consts.mask,
        c.block_ln_eps,
      );
    }
    return dense(ps, `${role}_pred`, norm(ps, `${role}_norm`, q, c.block_ln_eps));
  }

  // --- loss ---

  /** Cluster predictions resized to the teacher grid, cls kept last: [B, N+1, Dt] -> [B*((K-1)*ts*ts + 1), Dt]. */
  private resized(pred: T2, b: number): T2 {
    const g = this.geometry;
    const dt = this.config.teacher_dim;
    const p3 = tf.reshape(pred, [b, g.n + 1, dt]);
    const cls = tf.slice(p3, [0, g.n, 0], [b, 1, dt]);
    let body: tf.Tensor = tf.slice(p3, [0, 0, 0], [b, g.n, dt]);
    const ts2 = g.tside * g.tside;
    if (this.consts.resize) {
      // [B, K-1, T, Dt] -> [T, B*(K-1)*Dt]; one product with the fixed bilinear map -> [ts*ts, B*(K-1)*Dt]
      const cols = tf.reshape(tf.transpose(tf.reshape(body, [b, g.k - 1, g.t, dt]), [2, 0, 1, 3]), [
        g.t,
        b * (g.k - 1) * dt,
      ]);
      const out = constLeft(this.consts.resize.r, this.consts.resize.rT, cols as T2);
      // [ts*ts, B, K-1, Dt] -> [B, K-1, ts*ts, Dt]
      body = tf.transpose(tf.reshape(out, [ts2, b, g.k - 1, dt]), [1, 2, 0, 3]);
    }
    body = tf.reshape(body, [b, (g.k - 1) * ts2, dt]);
    return tf.reshape(tf.concat([body, cls], 1), [b * ((g.k - 1) * ts2 + 1), dt]) as T2;
  }

  /** 2 - 2 cos(pred, target) per decoder: the loss, per-cluster errors and the mean cosine. */
  decoderLoss(pred: T2, target: T2, b: number): Omit<DecoderOutput, 'pred'> {
    const g = this.geometry;
    const p = this.resized(pred, b);
    const pn = tf.div(p, tf.sqrt(tf.sum(tf.square(p), -1, true)));
    const tn = tf.div(target, tf.sqrt(tf.sum(tf.square(target), -1, true)));
    const cos = tf.sum(tf.mul(pn, tn), -1); // [B*rows]
    const err = tf.sub(2, tf.mul(2, cos));
    const ts2 = g.tside * g.tside;
    const perSample = tf.reshape(err, [b, (g.k - 1) * ts2 + 1]);
    const clusterError = tf.mean(
      tf.reshape(tf.slice(perSample, [0, 0], [b, (g.k - 1) * ts2]), [b, g.k - 1, ts2]),
      -1,
    ) as tf.Tensor2D;
    return { loss: tf.mean(err) as tf.Scalar, clusterError, agreement: tf.mean(cos) as tf.Scalar };
  }

  /** The whole model: encoder, the objective's decoders, their losses. Call inside tf.tidy / variableGrads. */
  forward(batch: DigptBatch): DigptOutput {
    const b = batch.images.shape[0];
    const c = this.config;
    const g = this.geometry;
    if (
      batch.images.shape[1] !== c.img_size ||
      batch.images.shape[2] !== c.img_size ||
      batch.images.shape[3] !== 3
    ) {
      throw new Error(
        `images have shape [${batch.images.shape.join(', ')}], the model expects [B, ${c.img_size}, ${c.img_size}, 3]`,
      );
    }
    this.checkOrder(batch.order, b);
    const { out, taps } = this.forwardEncoder(batch.images, batch.order);
    const res: { loss: tf.Scalar; encoderOut: tf.Tensor3D; gen?: DecoderOutput; dis?: DecoderOutput } = {
      loss: tf.scalar(0),
      encoderOut: tf.reshape(out, [b, g.n + 1, c.embed_dim]),
    };
    for (const role of decoderRoles(this.objective)) {
      const pred = this.forwardDecoder(role, taps, batch.order, b);
      const l = this.decoderLoss(pred, this.targets(role, batch.teacher, batch.order), b);
      res[role] = { ...l, pred: tf.reshape(pred, [b, g.n + 1, c.teacher_dim]) };
      res.loss = tf.add(res.loss, l.loss);
    }
    return res;
  }

  dispose(): void {
    this.params.dispose();
    this.consts.pos.dispose();
    this.consts.decPos.dispose();
    this.consts.mask.dispose();
    this.consts.resize?.r.dispose();
    this.consts.resize?.rT.dispose();
  }
}
