// Wall time per kernel name: wraps every kernel of a backend (wasm and cpu kernels run synchronously, so the time
// around kernelFunc is the kernel's own time).
import * as tf from '@tensorflow/tfjs-core';

export interface KernelRow {
  readonly kernel: string;
  readonly calls: number;
  readonly ms: number;
}

/** Kernels that `shapes` keys by their inputs' shapes. */
const SHAPED = new Set(['BatchMatMul', '_FusedMatMul', 'GatherV2', 'Transpose', 'Sum']);

function shapeKey(inputs: tf.NamedTensorInfoMap): string {
  return Object.values(inputs)
    .map((t) => t?.shape.join('x') ?? '?')
    .join(' @ ');
}

export class KernelProfiler {
  private readonly originals: tf.KernelConfig[] = [];
  private readonly acc = new Map<string, { calls: number; ms: number }>();

  /** With `shapes`, products are keyed by their operand shapes too ("BatchMatMul 1x1568x192 @ 1x192x768"). */
  constructor(
    private readonly backend: string,
    private readonly shapes = false,
  ) {}

  install(): void {
    for (const k of tf.getKernelsForBackend(this.backend)) {
      this.originals.push(k);
      tf.unregisterKernel(k.kernelName, this.backend);
      const name = k.kernelName;
      tf.registerKernel({
        ...k,
        kernelFunc: (args) => {
          const t0 = performance.now();
          const out = k.kernelFunc(args);
          const dt = performance.now() - t0;
          const key = this.shapes && SHAPED.has(name) ? `${name} ${shapeKey(args.inputs)}` : name;
          const e = this.acc.get(key);
          if (e) {
            e.calls++;
            e.ms += dt;
          } else this.acc.set(key, { calls: 1, ms: dt });
          return out;
        },
      });
    }
  }

  uninstall(): void {
    for (const k of this.originals) {
      tf.unregisterKernel(k.kernelName, this.backend);
      tf.registerKernel(k);
    }
    this.originals.length = 0;
  }

  reset(): void {
    this.acc.clear();
  }

  /** Kernels by total time, slowest first. */
  rows(): KernelRow[] {
    return [...this.acc.entries()]
      .map(([kernel, e]) => ({ kernel, calls: e.calls, ms: Math.round(e.ms * 10) / 10 }))
      .sort((x, y) => y.ms - x.ms);
  }
}

/** A table of the slowest kernels, per step, with each one's share of all kernel time. */
export function formatProfile(rows: readonly KernelRow[], steps: number, top = 40): string {
  const total = rows.reduce((s, r) => s + r.ms, 0);
  const lines = [
    `kernel time per step: ${(total / steps).toFixed(0)} ms in ${rows.reduce((s, r) => s + r.calls, 0) / steps} calls`,
  ];
  for (const r of rows.slice(0, top)) {
    lines.push(
      `  ${r.kernel.padEnd(44)} ${(r.ms / steps).toFixed(1).padStart(9)} ms ${((100 * r.ms) / total).toFixed(1).padStart(5)}% ` +
        `${String(r.calls / steps).padStart(7)} calls`,
    );
  }
  return lines.join('\n');
}
