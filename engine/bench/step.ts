// Times warm D-iGPT training steps (forward, backward, AdamW) of a config on the active backend.
import * as tf from '@tensorflow/tfjs-core';
import type { DigptConfig } from '../config.js';
import { DigptModel } from '../models/digpt.js';
import { Rng } from '../rng.js';
import { DataParallel, type StepPhases } from '../parallel/data-parallel.js';
import { countSteps } from './counters.js';
import { digptOptimizer, drawOrders, pretrainStep } from '../train/pretrain.js';

export interface StepBenchResult {
  readonly img_per_s: number;
  readonly step_ms_median: number;
  readonly step_ms: readonly number[];
  /** Median CPU time (user + system) of this process per step: less sensitive than wall time to other load. */
  readonly cpu_ms_median: number;
  readonly peak_rss_mb: number;
  readonly batch_size: number;
  readonly accum_steps: number;
  /** Threads sharing each micro-batch. */
  readonly workers: number;
  /** With 2 workers: the median ms per step of each phase (engine/parallel's StepPhases). */
  readonly phases_ms?: Readonly<Record<keyof StepPhases, number>>;
  /** Median kernels of a timed step in this thread (webgpu: GPU dispatches; elsewhere tfjs kernel runs). */
  readonly kernels_per_step: number;
  /** Median reads of a timed step in this thread (webgpu: GPU read-backs that wait; elsewhere data/dataSync). */
  readonly reads_per_step: number;
  /** On webgpu: the largest the GPU buffer pool grew (tfjs-webgpu's numBytesAllocatedInGPU), MB. */
  readonly peak_gpu_pool_mb?: number;
}

/** Random inputs as the PyTorch peer uses them: normal images and teacher tokens, random cluster orders. */
function randomMicro(model: DigptModel, batch: number, rng: Rng) {
  const c = model.config;
  return () => ({
    images: tf.randomNormal(
      [batch, c.img_size, c.img_size, 3],
      0,
      1,
      'float32',
      rng.nextU32(),
    ) as tf.Tensor4D,
    teacher: tf.randomNormal(
      [batch, 1 + c.teacher_grid ** 2, c.teacher_dim],
      0,
      1,
      'float32',
      rng.nextU32(),
    ) as tf.Tensor3D,
    order: drawOrders(rng, batch, model.geometry.k),
  });
}

export async function benchSteps(
  config: DigptConfig,
  opts: {
    batch: number;
    accum?: number;
    steps: number;
    warmup?: number;
    /** 2: split every micro-batch with a replica thread (engine/parallel). */
    workers?: number;
    onStep?: (i: number, ms: number) => void;
  },
): Promise<StepBenchResult> {
  const accum = opts.accum ?? 1;
  const model = new DigptModel(config, { seed: 0 });
  const opt = digptOptimizer(model);
  const dp =
    (opts.workers ?? 1) > 1 ? await DataParallel.create(model, Math.floor(opts.batch / 2)) : undefined;
  const rng = new Rng(0);
  const times: number[] = [];
  const cpu: number[] = [];
  const phases: StepPhases[] = [];
  let peak = process.memoryUsage().rss;
  let peakPool = 0;
  const kernels: number[] = [];
  const reads: number[] = [];
  const warm = opts.warmup ?? 2;
  const count = countSteps();
  try {
    for (let i = 0; i < warm + opts.steps; i++) {
      // back to the event loop between steps, as a training loop does (V8 runs its isolate tasks there)
      await new Promise((r) => setImmediate(r));
      count.reset();
      const t0 = performance.now();
      const c0 = process.cpuUsage();
      const micro = Array.from({ length: accum }, () => randomMicro(model, opts.batch, rng));
      await (dp ? dp.step(model, opt, micro, 1e-4) : pretrainStep(model, opt, micro, 1e-4));
      const ms = performance.now() - t0;
      const c = process.cpuUsage(c0);
      peak = Math.max(peak, process.memoryUsage().rss);
      peakPool = Math.max(
        peakPool,
        (tf.memory() as { numBytesAllocatedInGPU?: number }).numBytesAllocatedInGPU ?? 0,
      );
      if (i >= warm) {
        kernels.push(count.kernels);
        reads.push(count.reads);
        times.push(ms);
        cpu.push((c.user + c.system) / 1000);
        if (dp?.lastPhases) phases.push(dp.lastPhases);
      }
      opts.onStep?.(i, ms);
    }
  } finally {
    count.stop();
    await dp?.close();
    opt.dispose();
    model.dispose();
  }
  const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
  const med = median(times);
  return {
    img_per_s: (opts.batch * accum) / (med / 1000),
    step_ms_median: med,
    step_ms: times,
    cpu_ms_median: median(cpu),
    peak_rss_mb: peak / 2 ** 20,
    batch_size: opts.batch,
    accum_steps: accum,
    workers: opts.workers ?? 1,
    kernels_per_step: median(kernels),
    reads_per_step: median(reads),
    ...(tf.getBackend() === 'webgpu' ? { peak_gpu_pool_mb: peakPool / 2 ** 20 } : {}),
    ...(phases.length
      ? {
          phases_ms: Object.fromEntries(
            (Object.keys(phases[0] as StepPhases) as (keyof StepPhases)[]).map((k) => [
              k,
              median(phases.map((p) => p[k])),
            ]),
          ) as Record<keyof StepPhases, number>,
        }
      : {}),
  };
}
