// Shared helpers of the engine tests: backend start-up, small random inputs, a tensor-leak guard.
import * as tf from '@tensorflow/tfjs-core';
import * as assert from 'node:assert/strict';
import * as nodePath from 'node:path';
import { initBackend } from '../../engine/backend.js';
import type { DigptModel } from '../../engine/models/digpt.js';
import type { DigptBatch } from '../../engine/models/pretrain-model.js';
import { Rng } from '../../engine/rng.js';
import { drawOrders } from '../../engine/train/pretrain.js';

export const PARITY_DIR = nodePath.resolve(import.meta.dirname, '..', '..', '..', 'shared', 'parity');

/** The backend the suite runs on: DIGPT_BACKEND if set, else the best available (wasm here). */
export async function setup(): Promise<void> {
  await initBackend();
}

/** Fails when `fn` leaves more tensors alive than it found (tfjs-layers' expectNoLeakedTensors). */
export function expectNoLeaks<R>(fn: () => R, slack = 0): R {
  const before = tf.memory().numTensors;
  const out = fn();
  const after = tf.memory().numTensors;
  assert.ok(after - before <= slack, `leaked ${after - before} tensors`);
  return out;
}

/** expectNoLeaks of an asynchronous `fn` (counted once it has settled). */
export async function expectNoLeaksAsync<R>(fn: () => Promise<R>, slack = 0): Promise<R> {
  const before = tf.memory().numTensors;
  const out = await fn();
  const after = tf.memory().numTensors;
  assert.ok(after - before <= slack, `leaked ${after - before} tensors`);
  return out;
}

/** A random batch for a D-iGPT model (normal images and teacher tokens, random cluster orders). */
export function randomBatch(model: DigptModel, batch: number, seed: number): DigptBatch {
  const c = model.config;
  const rng = new Rng(seed);
  const img = new Float32Array(batch * c.img_size * c.img_size * 3).map(() => rng.normal());
  const tok = new Float32Array(batch * (1 + c.teacher_grid ** 2) * c.teacher_dim).map(() => rng.normal());
  return {
    images: tf.tensor4d(img, [batch, c.img_size, c.img_size, 3]),
    teacher: tf.tensor3d(tok, [batch, 1 + c.teacher_grid ** 2, c.teacher_dim]),
    order: drawOrders(rng, batch, model.geometry.k),
  };
}

export function allFinite(a: ArrayLike<number>): boolean {
  for (let i = 0; i < a.length; i++) if (!Number.isFinite(a[i] as number)) return false;
  return true;
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs((a[i] as number) - (b[i] as number)));
  return m;
}
