// Frozen-encoder evaluation: a linear probe and DINO's weighted k-NN, each reporting top-1 on the validation split.
import { VitClassifier } from '../../engine/models/vit.js';
import { Rng } from '../../engine/rng.js';
import {
  extractFeatures,
  knnPredict,
  top1,
  trainLinearProbe,
  type ProbeOptions,
} from '../../engine/train/classify.js';
import { evalImages, openClassifier, type LabelledImageSet } from './finetune-run.js';

/** Options shared by both evaluations. */
export interface FeatureOptions {
  /** Images per forward pass (64). */
  readonly batch?: number;
  /** Mean of patch tokens + fc_norm (true) or the cls token + norm, for a source whose config does not say (true). */
  readonly globalPool?: boolean;
}

/** Frozen features of both splits. */
export interface Features {
  readonly dim: number;
  readonly train: Float32Array;
  readonly val: Float32Array;
}

export interface ProbeResult {
  readonly top1: number;
  /** Top-1 of the probe on its own train features. */
  readonly train_top1: number;
  readonly dim: number;
  readonly epochs: number;
  /** Train loss per epoch. */
  readonly losses: number[];
}

export interface KnnResult {
  readonly top1: number;
  readonly k: number;
  readonly temperature: number;
  readonly dim: number;
}

/**
 * Features of the train and val images (whole image resized to the encoder's input, no augmentation) from an encoder
 * source: a pretraining run folder, a fine-tuning run folder or a weights file. A D-iGPT encoder gives
 * LayerNorm(mean of patch tokens) (an fc_norm at its identity init, as MAE's probe); a classifier gives its own
 * fc_norm (or norm of the cls token).
 */
export async function encoderFeatures(
  source: string,
  train: LabelledImageSet,
  val: LabelledImageSet,
  o: FeatureOptions = {},
): Promise<Features> {
  const { vit } = openClassifier(source, Math.max(1, train.classes.length), {
    ...(o.globalPool !== undefined ? { globalPool: o.globalPool } : {}),
  });
  try {
    return await featuresOf(vit, train, val, o.batch ?? 64);
  } finally {
    vit.dispose();
  }
}

/** Features of both splits from a classifier already in memory. */
export async function featuresOf(
  vit: VitClassifier,
  train: LabelledImageSet,
  val: LabelledImageSet,
  batch = 64,
): Promise<Features> {
  const s = vit.config.img_size;
  return {
    dim: vit.config.embed_dim,
    train: await extractFeatures(vit, train.count, batch, evalImages(train, s)),
    val: await extractFeatures(vit, val.count, batch, evalImages(val, s)),
  };
}

/**
 * Linear probe: features are computed once, standardised with the train set's mean/std (what MAE's affine-free
 * BatchNorm does at evaluation) and a Linear head is trained on them with AdamW + warm-up/cosine (MAE uses LARS).
 */
export async function probe(
  source: string | Features,
  train: LabelledImageSet,
  val: LabelledImageSet,
  o: FeatureOptions & ProbeOptions = {},
): Promise<ProbeResult> {
  const f = typeof source === 'string' ? await encoderFeatures(source, train, val, o) : source;
  const k = train.classes.length;
  const head = await trainLinearProbe(f.train, train.labels, f.dim, k, new Rng(o.seed ?? 0), o);
  return {
    top1: top1(await head.predict(f.val), val.labels),
    train_top1: top1(await head.predict(f.train), train.labels),
    dim: f.dim,
    epochs: head.losses.length,
    losses: head.losses,
  };
}

/** DINO's weighted k-NN (k=20, T=0.07, cosine similarity) of val features against train features. */
export async function knn(
  source: string | Features,
  train: LabelledImageSet,
  val: LabelledImageSet,
  o: FeatureOptions & { k?: number; temperature?: number } = {},
): Promise<KnnResult> {
  const f = typeof source === 'string' ? await encoderFeatures(source, train, val, o) : source;
  const k = o.k ?? 20;
  const temperature = o.temperature ?? 0.07;
  const pred = await knnPredict(f.train, train.labels, f.val, f.dim, train.classes.length, {
    k,
    temperature,
  });
  return { top1: top1(pred, val.labels), k: Math.min(k, train.count), temperature, dim: f.dim };
}
