// Classification pieces: soft-target cross-entropy, mixup/cutmix, random erasing, the fine-tune step, k-NN, linear probe.
import * as tf from '@tensorflow/tfjs-core';
import type { VitClassifier } from '../models/vit.js';
import { linear } from '../ops/nn.js';
import { AdamW, layerDecayScale, lrAt, type AdamWOptions, type OptimParam } from '../optim/adamw.js';
import type { Rng } from '../rng.js';
import { accumulateGrads, disposeGrads, readMeanLoss } from './grads.js';

type T2 = tf.Tensor2D;

// --- targets and loss ---

/**
 * One-hot targets with label smoothing, as timm's `one_hot(..., on_value, off_value)`: off = smoothing/K,
 * on = 1 - smoothing + off. Returns [B*K] row-major.
 */
export function smoothedTargets(
  labels: ArrayLike<number>,
  numClasses: number,
  smoothing: number,
): Float32Array {
  const off = smoothing / numClasses;
  const on = 1 - smoothing + off;
  const out = new Float32Array(labels.length * numClasses).fill(off);
  for (let i = 0; i < labels.length; i++) {
    const y = labels[i] as number;
    if (!(y >= 0 && y < numClasses))
      throw new Error(`label ${y} of sample ${i} is outside 0..${numClasses - 1}`);
    out[i * numClasses + y] = on;
  }
  return out;
}

/** timm's SoftTargetCrossEntropy: mean over the batch of -sum_k t_k log softmax(z)_k. logits, targets [B, K]. */
export function softTargetCrossEntropy(logits: T2, targets: T2): tf.Scalar {
  return tf.tidy(() => tf.neg(tf.mean(tf.sum(tf.mul(targets, tf.logSoftmax(logits, -1)), -1))) as tf.Scalar);
}

// --- random variates ---

/** Gamma(shape, 1) by Marsaglia-Tsang (shape < 1 boosted by U^(1/shape)). */
export function sampleGamma(rng: Rng, shape: number): number {
  if (!(shape > 0)) throw new Error(`gamma shape must be > 0, got ${shape}`);
  if (shape < 1) {
    let u = rng.uniform();
    while (u <= 0) u = rng.uniform();
    return sampleGamma(rng, shape + 1) * u ** (1 / shape);
  }
  const d = shape - 1 / 3;
  const c = 1 / Math.sqrt(9 * d);
  for (;;) {
    let x: number;
    let v: number;
    do {
      x = rng.normal();
      v = 1 + c * x;
    } while (v <= 0);
    v = v * v * v;
    const u = rng.uniform();
    if (u < 1 - 0.0331 * x ** 4) return d * v;
    if (u > 0 && Math.log(u) < 0.5 * x * x + d * (1 - v + Math.log(v))) return d * v;
  }
}

/** Beta(a, b) as X/(X+Y) with X ~ Gamma(a), Y ~ Gamma(b). */
export function sampleBeta(rng: Rng, a: number, b: number): number {
  const x = sampleGamma(rng, a);
  const y = sampleGamma(rng, b);
  return x + y > 0 ? x / (x + y) : 0.5;
}

// --- mixup / cutmix (timm's Mixup, mode 'batch') ---

export interface MixupOptions {
  /** Beta alpha of mixup; 0 disables it (0.8 in the recipe). */
  readonly mixupAlpha: number;
  /** Beta alpha of cutmix; 0 disables it (1.0 in the recipe). */
  readonly cutmixAlpha: number;
  /** Probability that a batch is mixed at all (timm's mix_prob, 1). */
  readonly prob?: number;
  /** Probability of cutmix rather than mixup when both are enabled (timm's switch_prob, 0.5). */
  readonly switchProb?: number;
  /** Label smoothing of both one-hot targets (0.1 in the recipe). */
  readonly smoothing: number;
  readonly numClasses: number;
}

/** A cutmix box in pixels: rows [y0, y1), columns [x0, x1). */
export interface CutBox {
  readonly y0: number;
  readonly y1: number;
  readonly x0: number;
  readonly x1: number;
}

export interface MixResult {
  /** Soft targets [B*K]: lambda * smoothed(y) + (1 - lambda) * smoothed(flip(y)). */
  readonly targets: Float32Array;
  /** Weight of each sample's own image and label (after cutmix's area correction). */
  readonly lambda: number;
  readonly mode: 'none' | 'mixup' | 'cutmix';
  readonly box?: CutBox;
}

/** timm's rand_bbox: a box of side sqrt(1 - lam) times the image's, centred uniformly, clipped to the image. */
export function cutmixBox(rng: Rng, side: number, lam: number): CutBox {
  const cut = Math.sqrt(1 - lam);
  const ch = Math.floor(side * cut);
  const cw = Math.floor(side * cut);
  const cy = rng.int(side);
  const cx = rng.int(side);
  const clip = (v: number): number => Math.min(side, Math.max(0, v));
  return {
    y0: clip(cy - Math.floor(ch / 2)),
    y1: clip(cy + Math.floor(ch / 2)),
    x0: clip(cx - Math.floor(cw / 2)),
    x1: clip(cx + Math.floor(cw / 2)),
  };
}

/**
 * Mixes a batch in place with its reversed self, as timm's Mixup in 'batch' mode: sample i takes image B-1-i with
 * weight 1-lambda (mixup: a blend; cutmix: a pasted box, lambda corrected to the box's true area).
 * images: [B, side, side, 3] NHWC floats (already normalised); labels: [B].
 */
export function mixBatch(
  rng: Rng,
  images: Float32Array,
  labels: ArrayLike<number>,
  side: number,
  o: MixupOptions,
): MixResult {
  const b = labels.length;
  const per = side * side * 3;
  if (images.length !== b * per)
    throw new Error(`mixBatch: ${images.length} values for ${b} images of side ${side}`);
  let lam = 1;
  let useCutmix = false;
  if (o.mixupAlpha > 0 || o.cutmixAlpha > 0) {
    // the order of draws follows timm's _params_per_batch
    let lamMix: number;
    if (o.mixupAlpha > 0 && o.cutmixAlpha > 0) {
      useCutmix = rng.uniform() < (o.switchProb ?? 0.5);
      lamMix = useCutmix
        ? sampleBeta(rng, o.cutmixAlpha, o.cutmixAlpha)
        : sampleBeta(rng, o.mixupAlpha, o.mixupAlpha);
    } else if (o.mixupAlpha > 0) {
      lamMix = sampleBeta(rng, o.mixupAlpha, o.mixupAlpha);
    } else {
      useCutmix = true;
      lamMix = sampleBeta(rng, o.cutmixAlpha, o.cutmixAlpha);
    }
    if (rng.uniform() < (o.prob ?? 1)) lam = lamMix;
  }
  let box: CutBox | undefined;
  let mode: MixResult['mode'] = 'none';
  if (lam !== 1) {
    const src = images.slice();
    if (useCutmix) {
      mode = 'cutmix';
      box = cutmixBox(rng, side, lam);
      const bx = box;
      lam = 1 - ((bx.y1 - bx.y0) * (bx.x1 - bx.x0)) / (side * side);
      for (let i = 0; i < b; i++) {
        const j = b - 1 - i;
        for (let y = bx.y0; y < bx.y1; y++) {
          const from = j * per + (y * side + bx.x0) * 3;
          images.set(src.subarray(from, from + (bx.x1 - bx.x0) * 3), i * per + (y * side + bx.x0) * 3);
        }
      }
    } else {
      mode = 'mixup';
      for (let i = 0; i < b; i++) {
        const j = b - 1 - i;
        for (let k = 0; k < per; k++)
          images[i * per + k] = (src[i * per + k] as number) * lam + (src[j * per + k] as number) * (1 - lam);
      }
    }
  }
  const k = o.numClasses;
  const y1 = smoothedTargets(labels, k, o.smoothing);
  const targets = new Float32Array(b * k);
  for (let i = 0; i < b; i++)
    for (let c = 0; c < k; c++)
      targets[i * k + c] = (y1[i * k + c] as number) * lam + (y1[(b - 1 - i) * k + c] as number) * (1 - lam);
  return { targets, lambda: lam, mode, ...(box ? { box } : {}) };
}

// --- random erasing (timm's RandomErasing, mode 'pixel', one box) ---

export interface EraseOptions {
  /** Probability an image is erased (0.25 in the recipe). */
  readonly prob: number;
  /** Erased area as a fraction of the image (0.02 to 1/3). */
  readonly minArea?: number;
  readonly maxArea?: number;
  /** Aspect ratio range, sampled log-uniformly (0.3 to 1/0.3). */
  readonly minRatio?: number;
  readonly maxRatio?: number;
}

/**
 * Erases one box of a normalised HWC image (side x side x 3 at `offset` in `img`) with N(0, 1) noise per value, with
 * probability `prob`; 10 tries to find a box that fits, as timm. Returns the box, or null when nothing was erased.
 */
export function randomErase(
  rng: Rng,
  img: Float32Array,
  offset: number,
  side: number,
  o: EraseOptions,
): CutBox | null {
  if (rng.uniform() >= o.prob) return null;
  const area = side * side;
  const minA = o.minArea ?? 0.02;
  const maxA = o.maxArea ?? 1 / 3;
  const lr0 = Math.log(o.minRatio ?? 0.3);
  const lr1 = Math.log(o.maxRatio ?? 1 / 0.3);
  for (let t = 0; t < 10; t++) {
    const target = (minA + rng.uniform() * (maxA - minA)) * area;
    const ratio = Math.exp(lr0 + rng.uniform() * (lr1 - lr0));
    const h = Math.round(Math.sqrt(target * ratio));
    const w = Math.round(Math.sqrt(target / ratio));
    if (w < side && h < side) {
      // Python's randint is inclusive at both ends
      const top = rng.int(side - h + 1);
      const left = rng.int(side - w + 1);
      for (let y = top; y < top + h; y++)
        for (let x = left; x < left + w; x++)
          for (let c = 0; c < 3; c++) img[offset + (y * side + x) * 3 + c] = rng.normal();
      return { y0: top, y1: top + h, x0: left, x1: left + w };
    }
  }
  return null;
}

// --- the fine-tuning step ---

/** Parameters whose weight decay is off in fine-tuning besides 1-D ones and biases (timm/MAE's no_weight_decay). */
export const NO_WEIGHT_DECAY = new Set(['pos_embed', 'cls_token']);

export interface ClassifierOptimizerOptions extends AdamWOptions {
  /** Layer-wise lr decay (0.65 in the recipe; 1 turns it off). */
  readonly layerDecay: number;
}

/**
 * The optimizer groups of a classifier, as MAE's param_groups_lrd: every trainable parameter with lr scale
 * layer_decay^(depth+1-layer_id), and weight decay except for 1-D parameters, biases, pos_embed and cls_token.
 */
export function classifierParams(vit: VitClassifier, layerDecay: number): OptimParam[] {
  const depth = vit.config.depth;
  return vit.params.trainable().map((p) => ({
    name: p.name,
    variable: p.variable,
    decay: p.spec.decay && !NO_WEIGHT_DECAY.has(p.name),
    lrScale: layerDecayScale(p.name, depth, layerDecay),
  }));
}

/** AdamW over `classifierParams(vit, o.layerDecay)`. */
export function classifierOptimizer(vit: VitClassifier, o: ClassifierOptimizerOptions): AdamW {
  return newAdamW(classifierParams(vit, o.layerDecay), o);
}

/** An AdamW built inside a scope, so the zero tensors its moments are initialised from are freed. */
function newAdamW(params: readonly OptimParam[], o: AdamWOptions): AdamW {
  let opt: AdamW | undefined;
  tf.tidy(() => {
    opt = new AdamW(params, o);
  });
  return opt as AdamW;
}

/** One micro-batch: normalised images [B, S, S, 3] and soft targets [B, K] (the step disposes both). */
export interface ClassifierBatch {
  readonly images: tf.Tensor4D;
  readonly targets: T2;
}

export interface ClassifierStepOptions {
  /** Drop path rate at the last block (0.1 in the recipe). */
  readonly dropPath?: number;
  /** Draws drop path's masks; required when dropPath > 0. */
  readonly rng?: Rng;
}

export interface ClassifierStepMetrics {
  /** Mean soft-target cross-entropy over micro-batches. */
  readonly loss: number;
  readonly lr: number;
}

/**
 * One optimisation step over `micro.length` micro-batches (each built lazily, so only one is in memory), AdamW at `lr`
 * times each parameter's lrScale. The loss is read once, after the update is queued; when it is not finite the
 * update has been applied with it and the caller stops the run (a checkpoint refuses non-finite weights).
 */
export async function classifierStep(
  vit: VitClassifier,
  opt: AdamW,
  micro: readonly (() => ClassifierBatch)[],
  lr: number,
  o: ClassifierStepOptions = {},
): Promise<ClassifierStepMetrics> {
  let current: ClassifierBatch | undefined;
  const release = (): void => {
    if (current) tf.dispose([current.images, current.targets]);
    current = undefined;
  };
  const fwd = { dropPath: o.dropPath ?? 0, ...(o.rng ? { rng: o.rng } : {}) };
  const { losses, grads } = accumulateGrads(
    vit.params.trainable(),
    (i) => {
      const batch = (micro[i] as () => ClassifierBatch)();
      current = batch;
      return softTargetCrossEntropy(vit.forward(batch.images, fwd), batch.targets);
    },
    micro.length,
    release,
  );
  try {
    opt.apply(grads, lr);
  } finally {
    disposeGrads(grads);
  }
  return { loss: await readMeanLoss(losses), lr };
}

// --- evaluation ---

/** Index of the largest value of each row of a [rows, cols] matrix. */
export function argmaxRows(values: Float32Array, rows: number, cols: number): Int32Array {
  const out = new Int32Array(rows);
  for (let r = 0; r < rows; r++) {
    let best = 0;
    for (let c = 1; c < cols; c++)
      if ((values[r * cols + c] as number) > (values[r * cols + best] as number)) best = c;
    out[r] = best;
  }
  return out;
}

/** Fraction of predictions equal to their labels. */
export function top1(pred: ArrayLike<number>, labels: ArrayLike<number>): number {
  if (pred.length !== labels.length)
    throw new Error(`${pred.length} predictions for ${labels.length} labels`);
  if (pred.length === 0) return 0;
  let ok = 0;
  for (let i = 0; i < pred.length; i++) if (pred[i] === labels[i]) ok++;
  return ok / pred.length;
}

/**
 * Runs `fn` over `count` samples in batches of `batch`: `images(start, n)` gives the normalised NHWC floats of
 * samples [start, start+n); `fn` maps their tensor to a [n, D] result, read back and concatenated ([count*D]).
 * Each batch is built and freed inside one tidy, so nothing is left behind.
 */
export async function mapBatches(
  count: number,
  batch: number,
  side: number,
  images: (start: number, n: number) => Float32Array,
  fn: (x: tf.Tensor4D) => T2,
): Promise<{ data: Float32Array; dim: number }> {
  let out: Float32Array | undefined;
  let dim = 0;
  for (let s = 0; s < count; s += batch) {
    const n = Math.min(batch, count - s);
    const host = images(s, n);
    const t = tf.tidy(() => fn(tf.tensor4d(host, [n, side, side, 3])));
    const y = (await t.data()) as Float32Array;
    t.dispose();
    if (!out) {
      dim = y.length / n;
      out = new Float32Array(count * dim);
    }
    out.set(y, s * dim);
  }
  return { data: out ?? new Float32Array(0), dim };
}

/** Pooled features [count*C] of a classifier's encoder (vit.features), in batches, without drop path. */
export async function extractFeatures(
  vit: VitClassifier,
  count: number,
  batch: number,
  images: (start: number, n: number) => Float32Array,
): Promise<Float32Array> {
  return (await mapBatches(count, batch, vit.config.img_size, images, (x) => vit.features(x))).data;
}

/** Predicted classes of `count` images (argmax of the logits), in batches. */
export async function predictClasses(
  vit: VitClassifier,
  count: number,
  batch: number,
  images: (start: number, n: number) => Float32Array,
): Promise<{ pred: Int32Array; logits: Float32Array }> {
  const k = vit.config.num_classes;
  const { data } = await mapBatches(count, batch, vit.config.img_size, images, (x) => vit.forward(x));
  return { pred: argmaxRows(data, count, k), logits: data };
}

/** Mean cross-entropy of logits [N*K] against hard labels (numbers, computed in JS). */
export function crossEntropy(logits: Float32Array, labels: ArrayLike<number>, k: number): number {
  let sum = 0;
  for (let i = 0; i < labels.length; i++) {
    let m = -Infinity;
    for (let c = 0; c < k; c++) m = Math.max(m, logits[i * k + c] as number);
    let z = 0;
    for (let c = 0; c < k; c++) z += Math.exp((logits[i * k + c] as number) - m);
    sum += m + Math.log(z) - (logits[i * k + (labels[i] as number)] as number);
  }
  return labels.length ? sum / labels.length : 0;
}

// --- weighted k-NN (DINO's eval_knn) ---

export interface KnnOptions {
  /** Neighbours (20). */
  readonly k?: number;
  /** Temperature of the vote weights exp(sim/T) (0.07). */
  readonly temperature?: number;
  /** Test rows per similarity product (256). */
  readonly chunk?: number;
}

/** Rows scaled to unit L2 norm (a copy). */
export function l2Normalize(x: Float32Array, dim: number): Float32Array {
  const out = new Float32Array(x.length);
  for (let r = 0; r < x.length / dim; r++) {
    let s = 0;
    for (let c = 0; c < dim; c++) s += (x[r * dim + c] as number) ** 2;
    const inv = 1 / Math.max(Math.sqrt(s), 1e-12);
    for (let c = 0; c < dim; c++) out[r * dim + c] = (x[r * dim + c] as number) * inv;
  }
  return out;
}

/**
 * DINO's weighted k-NN: cosine similarity between L2-normalised test and train features, the top-k train neighbours
 * vote for their class with weight exp(sim/T), the class with the largest vote wins. Features are [N*dim].
 * The similarity is one plain 2-D product per chunk against the train matrix transposed once.
 */
export async function knnPredict(
  trainFeats: Float32Array,
  trainLabels: ArrayLike<number>,
  testFeats: Float32Array,
  dim: number,
  numClasses: number,
  o: KnnOptions = {},
): Promise<Int32Array> {
  const nTrain = trainLabels.length;
  const nTest = testFeats.length / dim;
  const k = Math.min(o.k ?? 20, nTrain);
  const temp = o.temperature ?? 0.07;
  const chunk = o.chunk ?? 256;
  const pred = new Int32Array(nTest);
  const trainT = tf.tidy(() => tf.transpose(tf.tensor2d(l2Normalize(trainFeats, dim), [nTrain, dim])));
  const test = l2Normalize(testFeats, dim);
  try {
    for (let s = 0; s < nTest; s += chunk) {
      const n = Math.min(chunk, nTest - s);
      const r = tf.tidy(() => {
        const q = tf.tensor2d(test.subarray(s * dim, (s + n) * dim), [n, dim]);
        return tf.topk(tf.matMul(q, trainT as T2), k);
      });
      let values: Float32Array;
      let indices: Int32Array;
      try {
        [values, indices] = (await Promise.all([r.values.data(), r.indices.data()])) as [
          Float32Array,
          Int32Array,
        ];
      } finally {
        tf.dispose([r.values, r.indices]);
      }
      const votes = new Float64Array(numClasses);
      for (let i = 0; i < n; i++) {
        votes.fill(0);
        for (let j = 0; j < k; j++) {
          const y = trainLabels[indices[i * k + j] as number] as number;
          votes[y] = (votes[y] as number) + Math.exp((values[i * k + j] as number) / temp);
        }
        let best = 0;
        for (let c = 1; c < numClasses; c++) if ((votes[c] as number) > (votes[best] as number)) best = c;
        pred[s + i] = best;
      }
    }
  } finally {
    trainT.dispose();
  }
  return pred;
}

// --- linear probe on frozen features ---

export interface ProbeOptions {
  /** Passes over the train features (90, MAE's linear probe). */
  readonly epochs?: number;
  /** Features per step (256). */
  readonly batch?: number;
  /** Peak AdamW lr (1e-3), reached after warmupEpochs (10) and decayed by half-cycle cosine to 0. */
  readonly lr?: number;
  readonly warmupEpochs?: number;
  /** AdamW weight decay of the head's weight (0, as MAE's probe). */
  readonly weightDecay?: number;
  readonly seed?: number;
}

/** A trained linear head on standardised features: predict(x) = argmax(((x - mean) / std) W + b). */
export interface LinearProbe {
  readonly mean: Float32Array;
  readonly std: Float32Array;
  /** [dim, K] (engine layout) and [K]. */
  readonly weight: Float32Array;
  readonly bias: Float32Array;
  /** Train loss of each epoch. */
  readonly losses: number[];
  predict(feats: Float32Array): Promise<Int32Array>;
}

/**
 * Trains a linear classifier on precomputed frozen features. MAE puts a BatchNorm without affine before the head
 * and trains with LARS; here the features are standardised once with the train set's mean/std (what that BatchNorm
 * does at evaluation) and the head is trained with AdamW + warm-up/cosine on shuffled mini-batches.
 */
export async function trainLinearProbe(
  feats: Float32Array,
  labels: ArrayLike<number>,
  dim: number,
  numClasses: number,
  rng: Rng,
  o: ProbeOptions = {},
): Promise<LinearProbe> {
  const n = labels.length;
  const mean = new Float32Array(dim);
  const std = new Float32Array(dim);
  for (let r = 0; r < n; r++)
    for (let c = 0; c < dim; c++) mean[c] = (mean[c] as number) + (feats[r * dim + c] as number) / n;
  for (let r = 0; r < n; r++)
    for (let c = 0; c < dim; c++)
      std[c] = (std[c] as number) + ((feats[r * dim + c] as number) - (mean[c] as number)) ** 2 / n;
  for (let c = 0; c < dim; c++) std[c] = Math.sqrt((std[c] as number) + 1e-6);
  const standardise = (x: Float32Array): Float32Array => {
    const out = new Float32Array(x.length);
    for (let i = 0; i < x.length; i++)
      out[i] = ((x[i] as number) - (mean[i % dim] as number)) / (std[i % dim] as number);
    return out;
  };
  const z = standardise(feats);
  const epochs = o.epochs ?? 90;
  const batch = Math.min(o.batch ?? 256, n);
  const perEpoch = Math.max(1, Math.floor(n / batch));
  const schedule = {
    baseLr: o.lr ?? 1e-3,
    minLr: 0,
    warmupSteps: Math.min(o.warmupEpochs ?? 10, epochs) * perEpoch,
    totalSteps: epochs * perEpoch,
  };
  // MAE's head init: trunc_normal(std=0.01) weight, zero bias
  const w0 = new Float32Array(dim * numClasses).map(() => rng.normal() * 0.01);
  const w = tf.tidy(() => tf.variable(tf.tensor2d(w0, [dim, numClasses]), true));
  const b = tf.tidy(() => tf.variable(tf.zeros([numClasses]), true));
  const params = [
    { name: 'weight', variable: w, decay: true },
    { name: 'bias', variable: b, decay: false },
  ];
  const opt = newAdamW(params, { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: o.weightDecay ?? 0 });
  const losses: number[] = [];
  const xb = new Float32Array(batch * dim);
  const yb = new Int32Array(batch);
  let step = 0;
  try {
    for (let e = 0; e < epochs; e++) {
      const order = rng.permutation(n);
      // the epoch's step losses stay on the device and are read once at its end
      const stepLosses: tf.Tensor[] = [];
      for (let s = 0; s < perEpoch; s++) {
        for (let i = 0; i < batch; i++) {
          const r = order[s * batch + i] as number;
          xb.set(z.subarray(r * dim, (r + 1) * dim), i * dim);
          yb[i] = labels[r] as number;
        }
        const { losses: loss, grads } = accumulateGrads(
          params,
          () => {
            // variableGrads frees what this builds
            const x = tf.tensor2d(xb, [batch, dim]);
            const t = tf.oneHot(tf.tensor1d(yb, 'int32'), numClasses).toFloat() as T2;
            return softTargetCrossEntropy(linear(x, w as T2, b as tf.Tensor1D), t);
          },
          1,
        );
        opt.apply(grads, lrAt(schedule, step++));
        disposeGrads(grads);
        stepLosses.push(loss);
      }
      const all = tf.concat(stepLosses);
      tf.dispose(stepLosses);
      const v = await all.data();
      all.dispose();
      let sum = 0;
      for (const x of v) sum += x;
      losses.push(sum / perEpoch);
    }
    const weight = (await w.data()).slice() as Float32Array;
    const bias = (await b.data()).slice() as Float32Array;
    return {
      mean,
      std,
      weight,
      bias,
      losses,
      predict: async (x) => {
        const rows = x.length / dim;
        const t = tf.tidy(() =>
          linear(
            tf.tensor2d(standardise(x), [rows, dim]),
            tf.tensor2d(weight, [dim, numClasses]),
            tf.tensor1d(bias),
          ),
        );
        const logits = (await t.data()) as Float32Array;
        t.dispose();
        return argmaxRows(logits, rows, numClasses);
      },
    };
  } finally {
    opt.dispose();
    w.dispose();
    b.dispose();
  }
}
