// The shared-memory layout between a training thread and its replica: control words, weights, gradients, one half-batch
// and the replica's per-cluster errors of it.
import type { DigptConfig } from '../config.js';

/** Control words (Int32) at the start of the buffer. */
export const CTRL = {
  /** Bumped by the trainer to start a job; the replica waits on it. */
  GO: 0,
  /** Bumped by the replica when a job is done (or it is ready / failed); the trainer waits on it. */
  DONE: 1,
  /** 1: run a micro-batch; 2: stop. */
  CMD: 2,
  /** Samples in the replica's part of the micro-batch. */
  BATCH: 3,
  /** Bumped by the trainer whenever the weights region holds new weights. */
  WEIGHTS: 4,
  /** Set by the replica on failure (its message is in the text region). */
  FAILED: 5,
  /** Entries the replica wrote to the errors region (its share's per-cluster errors). */
  ERRORS: 6,
} as const;
const CTRL_WORDS = 8;
const TEXT_BYTES = 4096;
/** loss, gen loss, dis loss, agreement; then the replica's ms loading weights, computing, writing gradients. */
const SCALARS = 7;

export interface SharedLayout {
  readonly params: number;
  readonly maxBatch: number;
  readonly imageFloats: number;
  readonly teacherFloats: number;
  readonly orderInts: number;
  readonly errorFloats: number;
}

/** Sizes of one sample's inputs (and errors) for a model config. */
export function layoutFor(
  config: DigptConfig,
  params: number,
  maxBatch: number,
  orderLength: number,
  errorLength: number,
): SharedLayout {
  return {
    params,
    maxBatch,
    imageFloats: config.img_size * config.img_size * 3,
    teacherFloats: (1 + config.teacher_grid * config.teacher_grid) * config.teacher_dim,
    orderInts: orderLength,
    errorFloats: errorLength,
  };
}

/** Typed views over one SharedArrayBuffer laid out for `l`. */
export interface SharedViews {
  readonly buffer: SharedArrayBuffer;
  readonly ctrl: Int32Array;
  readonly text: Uint8Array;
  readonly scalars: Float32Array;
  readonly weights: Float32Array;
  readonly grads: Float32Array;
  readonly images: Float32Array;
  readonly teacher: Float32Array;
  readonly order: Int32Array;
  readonly errors: Float32Array;
}

export function sharedBytes(l: SharedLayout): number {
  return (
    CTRL_WORDS * 4 +
    TEXT_BYTES +
    SCALARS * 4 +
    2 * l.params * 4 +
    l.maxBatch * (l.imageFloats + l.teacherFloats + l.orderInts + l.errorFloats) * 4
  );
}

export function views(buffer: SharedArrayBuffer, l: SharedLayout): SharedViews {
  let o = 0;
  const take = (bytes: number): number => {
    const at = o;
    o += bytes;
    return at;
  };
  const ctrl = new Int32Array(buffer, take(CTRL_WORDS * 4), CTRL_WORDS);
  const text = new Uint8Array(buffer, take(TEXT_BYTES), TEXT_BYTES);
  const scalars = new Float32Array(buffer, take(SCALARS * 4), SCALARS);
  const weights = new Float32Array(buffer, take(l.params * 4), l.params);
  const grads = new Float32Array(buffer, take(l.params * 4), l.params);
  const images = new Float32Array(buffer, take(l.maxBatch * l.imageFloats * 4), l.maxBatch * l.imageFloats);
  const teacher = new Float32Array(
    buffer,
    take(l.maxBatch * l.teacherFloats * 4),
    l.maxBatch * l.teacherFloats,
  );
  const order = new Int32Array(buffer, take(l.maxBatch * l.orderInts * 4), l.maxBatch * l.orderInts);
  const errors = new Float32Array(buffer, take(l.maxBatch * l.errorFloats * 4), l.maxBatch * l.errorFloats);
  return { buffer, ctrl, text, scalars, weights, grads, images, teacher, order, errors };
}

export function writeText(v: SharedViews, s: string): void {
  const bytes = new TextEncoder().encode(s).subarray(0, v.text.length - 1);
  v.text.fill(0);
  v.text.set(bytes);
}

export function readText(v: SharedViews): string {
  const end = v.text.indexOf(0);
  return new TextDecoder().decode(v.text.slice(0, end < 0 ? v.text.length : end));
}
