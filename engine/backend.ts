// Picks the tfjs backend at start-up: tensorflow (GPU, then CPU), wasm, cpu; the first that loads and passes a numeric self-check.
import * as tf from '@tensorflow/tfjs-core';
import { enableRelaxedSimd } from './ops/wasm_gemm.js';
import { useFastWasmKernels } from './ops/wasm_kernels.js';
// tfjs-core's Node bundle has no gradient functions; the union package's bundle registers them all
import '@tensorflow/tfjs';
import { createRequire } from 'node:module';

export type BackendName = 'tensorflow-gpu' | 'tensorflow' | 'wasm' | 'cpu';

/** What start-up found: the backend that runs, and why each better one does not. */
export interface BackendReport {
  /** The backend in use. */
  readonly name: BackendName;
  /** tfjs's own name for it ('tensorflow', 'wasm' or 'cpu'). */
  readonly tfName: string;
  /** One line per candidate tried before it, saying why it was not used. */
  readonly skipped: readonly { readonly name: BackendName; readonly reason: string }[];
  /** True when DIGPT_BACKEND chose it. */
  readonly forced: boolean;
  /** On wasm: how the engine's GEMM multiplies ('fma': relaxed-SIMD fused multiply-add, or 'mul+add') and why. */
  readonly gemm?: { readonly kind: 'fma' | 'mul+add'; readonly why: string };
}

const ORDER: readonly BackendName[] = ['tensorflow-gpu', 'tensorflow', 'wasm', 'cpu'];
const require = createRequire(import.meta.url);

let current: BackendReport | undefined;
let wasmGemm: { fma: boolean; why: string } | undefined;

function errorText(e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e);
  return msg.split('\n')[0] ?? msg;
}

/** Loads the package for a candidate; throws with a short reason when it cannot. */
async function register(name: BackendName): Promise<string> {
  switch (name) {
    case 'tensorflow-gpu':
    case 'tensorflow': {
      const pkg = name === 'tensorflow-gpu' ? '@tensorflow/tfjs-node-gpu' : '@tensorflow/tfjs-node';
      try {
        require.resolve(pkg);
      } catch {
        throw new Error(`${pkg}: not installed`);
      }
      try {
        require(pkg);
      } catch (e) {
        throw new Error(`${pkg}: installed but does not load (${errorText(e)})`);
      }
      if (name === 'tensorflow-gpu' && !hasCuda())
        throw new Error(`${pkg}: loads, but no CUDA device is visible`);
      return 'tensorflow';
    }
    case 'wasm': {
      await import('@tensorflow/tfjs-backend-wasm');
      // before any product is built: the GEMM uses fused multiply-add when relaxed SIMD is available
      wasmGemm = await enableRelaxedSimd();
      return 'wasm';
    }
    case 'cpu': {
      await import('@tensorflow/tfjs-backend-cpu');
      return 'cpu';
    }
  }
}

function hasCuda(): boolean {
  // tfjs-node-gpu loads without a GPU and silently runs on the CPU; only a visible device makes it the GPU backend.
  const env = process.env['CUDA_VISIBLE_DEVICES'];
  if (env !== undefined && (env === '' || env === '-1')) return false;
  try {
    return require('node:fs').existsSync('/dev/nvidia0') as boolean;
  } catch {
    return false;
  }
}

/** A tiny product and softmax whose answers are known; catches a backend that loads but computes wrongly. */
function selfCheck(): void {
  const got = tf.tidy(() => {
    const a = tf.tensor2d([1, 2, 3, 4, 5, 6], [2, 3]);
    const b = tf.tensor2d([1, 0, -1, 2, 0.5, 1], [3, 2]);
    const m = tf.matMul(a, b);
    const s = tf.softmax(tf.tensor1d([0, Math.log(3)]));
    return [...m.dataSync(), ...s.dataSync()];
  });
  const want = [0.5, 7, 2, 16, 0.25, 0.75];
  for (let i = 0; i < want.length; i++) {
    if (Math.abs((got[i] ?? NaN) - (want[i] ?? 0)) > 1e-5)
      throw new Error(`self-check failed (got ${got.join(',')})`);
  }
}

function parseForced(v: string | undefined): BackendName[] | undefined {
  if (v === undefined || v === '') return undefined;
  switch (v) {
    case 'tensorflow':
      return ['tensorflow-gpu', 'tensorflow'];
    case 'tensorflow-gpu':
    case 'wasm':
    case 'cpu':
      return [v];
    default:
      throw new Error(
        `DIGPT_BACKEND=${v}: unknown backend; use one of tensorflow, tensorflow-gpu, wasm, cpu`,
      );
  }
}

/**
 * Chooses and initialises the backend once per process (or thread). DIGPT_BACKEND=wasm|cpu|tensorflow forces one;
 * a forced backend that fails is an error, never a silent fallback.
 */
export async function initBackend(
  force: string | undefined = process.env['DIGPT_BACKEND'],
): Promise<BackendReport> {
  const forcedList = parseForced(force);
  if (current && (forcedList === undefined || forcedList.includes(current.name))) return current;
  const candidates = forcedList ?? ORDER;
  // PROD silences tfjs's console advice (we report the backend ourselves) and skips its debug-only checks
  tf.env().set('PROD', true);
  const skipped: { name: BackendName; reason: string }[] = [];
  for (const name of candidates) {
    try {
      const tfName = await register(name);
      if (!(await tf.setBackend(tfName))) throw new Error(`tf.setBackend('${tfName}') failed`);
      await tf.ready();
      // the engine's wasm kernels from the first operation on: a computation must not change kernels (and rounding)
      // depending on whether a model op has run yet in this process (resumed runs must repeat losses exactly)
      if (tfName === 'wasm') useFastWasmKernels();
      selfCheck();
      current = {
        name,
        tfName,
        skipped,
        forced: forcedList !== undefined,
        ...(tfName === 'wasm' && wasmGemm
          ? { gemm: { kind: wasmGemm.fma ? 'fma' : 'mul+add', why: wasmGemm.why } }
          : {}),
      };
      return current;
    } catch (e) {
      skipped.push({ name, reason: errorText(e) });
    }
  }
  const why = skipped.map((s) => `${s.name}: ${s.reason}`).join('; ');
  throw new Error(`no tfjs backend could start (${why})`);
}

/** The report of the running backend; initBackend must have run. */
export function backendReport(): BackendReport {
  if (!current) throw new Error('initBackend() has not run');
  return current;
}

/** One human line: "backend: wasm (tensorflow-gpu: not installed; tensorflow: not installed)". */
export function describeBackend(r: BackendReport): string {
  const why = r.skipped.map((s) => s.reason).join('; ');
  const gemm = r.gemm
    ? ` — products: the engine's wasm GEMM, ${r.gemm.kind === 'fma' ? 'fused multiply-add' : 'multiply + add'} (${r.gemm.why})`
    : '';
  return `backend: ${r.name}${r.forced ? ' (forced by DIGPT_BACKEND)' : ''}${why ? ` — not used: ${why}` : ''}${gemm}`;
}

/** True when matMuls must avoid transpose flags and batch dimensions to stay on XNNPACK. */
export function needsPlainMatMul(): boolean {
  return tf.getBackend() === 'wasm';
}
