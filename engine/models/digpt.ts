// The D-iGPT pretraining model: the student encoder over clusters of patches in a random order, generative and discriminative decoders.
import * as tf from '@tensorflow/tfjs-core';
import { digptGeometry, type DigptConfig, type DigptGeometry } from '../config.js';
import { layerNorm, linear } from '../ops/nn.js';
import { decoderBlock, decoderBlockSpecs, dense, norm, w1, w2 } from './blocks.js';
import { clusterMask, clusterTable, sincos2d } from './geometry.js';
import { linearSpecs, normSpecs, ParamSet, plainSpec, type ParamSpec } from './params.js';
import type {
  DecoderOutput,
  DigptBatch,
  DigptOutput,
  PretrainModel,
  PretrainObjective,
} from './pretrain-model.js';
import { encoderSpecs, StudentEncoder } from './student.js';
import { cosineError, GridResize } from './teacher-loss.js';

type T2 = tf.Tensor2D;

/** Which decoders are trained: both (the paper), only the generative one, or only the discriminative one. */
export type DigptObjective = Extract<PretrainObjective, 'digpt' | 'gen-only' | 'dis-only'>;

/** The two decoders, by their role (the official code calls them ar_ and kd_; see naming.ts for its quirk). */
export type DecoderRole = 'gen' | 'dis';

export function decoderRoles(objective: DigptObjective): DecoderRole[] {
  return objective === 'digpt' ? ['gen', 'dis'] : objective === 'gen-only' ? ['gen'] : ['dis'];
}

/** Canonical parameter list of a D-iGPT model: the student encoder, then each decoder's. */
export function digptSpecs(c: DigptConfig, objective: DigptObjective = 'digpt'): ParamSpec[] {
  const C = c.embed_dim;
  const D = c.dec_dim;
  const specs = encoderSpecs(c);
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

/** Constant tensors built once per model: the decoder position table, the mask, the per-cluster resize. */
interface Constants {
  /** Decoder sin-cos table [1 + G*G, D]: row 0 is the cls slot (zeros). */
  readonly decPos: T2;
  /** Additive block-causal mask [N+1, N+1]. */
  readonly mask: T2;
  /** Each cluster's s x s predictions onto its ts x ts teacher tokens (identity when s == ts). */
  readonly resize: GridResize;
}

export class DigptModel implements PretrainModel {
  readonly config: DigptConfig;
  readonly geometry: DigptGeometry;
  readonly objective: DigptObjective;
  readonly params: ParamSet;
  readonly encoder: StudentEncoder;
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
    // --- encoder ---
    this.encoder = new StudentEncoder(config, this.params);
    // --- constants ---
    this.studentClusters = clusterTable(g.grid, config.clusters_per_side);
    this.teacherClusters = clusterTable(config.teacher_grid, config.clusters_per_side);
    this.consts = {
      decPos: tf.tensor2d(sincos2d(config.dec_dim, g.grid, true), [1 + g.grid * g.grid, config.dec_dim]),
      mask: tf.tensor2d(clusterMask(g.k - 1, g.t), [g.n + 1, g.n + 1]),
      resize: new GridResize(g.side, g.tside),
    };
  }

  /** Entries per sample of `DigptBatch.order`: the K clusters (what the trainer's drawOrders must draw). */
  get orderLength(): number {
    return this.geometry.k;
  }

  /** Errors per sample: one per predicted cluster, K-1. */
  get errorLength(): number {
    return this.geometry.k - 1;
  }

  /** The fixed student position table with its cls row, [1 + G*G, C], as the official `pos_embed` holds it. */
  posEmbedWithCls(): Float32Array {
    return this.encoder.posEmbedWithCls();
  }

  /** The fixed decoder position table [1 + G*G, D] (official `decoder_pos_embed`). */
  decoderPosEmbed(): Float32Array {
    return sincos2d(this.config.dec_dim, this.geometry.grid, true);
  }

  /** The mask as a flat (N+1)^2 array of 0 / -Infinity (official `mask`). */
  maskValues(): Float32Array {
    return clusterMask(this.geometry.k - 1, this.geometry.t);
  }

  // --- encoder ---

  /**
   * The encoder over the first K-1 clusters in `order` (the last one is never seen), cls last, under the
   * block-causal mask: its output [B*(N+1), C] and the tapped outputs (in `taps` order).
   */
  forwardEncoder(images: tf.Tensor4D, order: Int32Array): { out: T2; taps: T2[] } {
    const g = this.geometry;
    const b = images.shape[0];
    const gg = g.grid * g.grid;
    // raster -> cluster order: row b*GG + i*T + t holds token t of cluster order[b, i]
    const perm = new Int32Array(b * gg);
    for (let s = 0; s < b; s++)
      for (let i = 0; i < g.k; i++) {
        const cl = this.studentClusters[order[s * g.k + i] as number] as Int32Array;
        for (let t = 0; t < g.t; t++) perm[s * gg + i * g.t + t] = s * gg + (cl[t] as number);
      }
    const select = this.encoder.select(perm, g.n);
    return this.encoder.forward(images, select, this.consts.mask, this.config.taps);
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
    const per = 1 + c.teacher_grid * c.teacher_grid; // shape checked by the encoder (forward)
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
    const ts2 = g.tside * g.tside;
    const p3 = tf.reshape(pred, [b, g.n + 1, dt]);
    const cls = tf.slice(p3, [0, g.n, 0], [b, 1, dt]);
    // [B, N, Dt] -> one s x s map per cluster [B*(K-1), T, Dt] -> [B*(K-1), ts*ts, Dt]
    const clusters = tf.reshape(tf.slice(p3, [0, 0, 0], [b, g.n, dt]), [b * (g.k - 1), g.t, dt]);
    const body = tf.reshape(this.consts.resize.apply(clusters as tf.Tensor3D), [b, (g.k - 1) * ts2, dt]);
    return tf.reshape(tf.concat([body, cls], 1), [b * ((g.k - 1) * ts2 + 1), dt]) as T2;
  }

  /** 2 - 2 cos(pred, target) per decoder: the loss, per-cluster errors and the mean cosine. */
  decoderLoss(pred: T2, target: T2, b: number): Omit<DecoderOutput, 'pred'> {
    const g = this.geometry;
    const { cos, err } = cosineError(this.resized(pred, b), target); // [B*rows]
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
    this.encoder.checkInputs(batch.images, batch.teacher);
    this.encoder.checkOrder(batch.order, b, g.k, 'cluster order');
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
    this.encoder.dispose();
    this.consts.decPos.dispose();
    this.consts.mask.dispose();
    this.consts.resize.dispose();
  }
}
