// Times the teacher's forward pass: a CLIP ViT-B/16-shaped vision tower at 224 px (random weights, same work).
import * as tf from '@tensorflow/tfjs-core';
import { resolveClipConfig } from '../config.js';
import { ClipVision } from '../models/clip.js';

export interface TeacherBenchResult {
  readonly model: string;
  readonly batch: number;
  readonly img_per_s: number;
  readonly batch_ms_median: number;
  readonly peak_rss_mb: number;
}

export async function benchClipB16(
  batch: number,
  steps: number,
  warmup: number,
): Promise<TeacherBenchResult> {
  // OpenAI's ViT-B/16: width 768, 12 layers, 12 heads, 512-wide projection, QuickGELU
  const cfg = resolveClipConfig({
    resolution: 224,
    patch_size: 16,
    width: 768,
    layers: 12,
    heads: 12,
    output_dim: 512,
    activation: 'quick_gelu',
  });
  const clip = new ClipVision(cfg, 0);
  const x = tf.randomNormal([batch, 224, 224, 3], 0, 1, 'float32', 1) as tf.Tensor4D;
  const times: number[] = [];
  let peak = process.memoryUsage().rss;
  try {
    for (let i = 0; i < warmup + steps; i++) {
      const t0 = performance.now();
      const y = tf.tidy(() => clip.forward(x));
      await y.data();
      y.dispose();
      if (i >= warmup) times.push(performance.now() - t0);
      peak = Math.max(peak, process.memoryUsage().rss);
    }
  } finally {
    x.dispose();
    clip.dispose();
  }
  const med = [...times].sort((p, q) => p - q)[Math.floor(times.length / 2)] as number;
  return {
    model: 'clip-vit-b16-224',
    batch,
    img_per_s: (batch * 1000) / med,
    batch_ms_median: med,
    peak_rss_mb: peak / 2 ** 20,
  };
}
