// Picks the tfjs backend at start-up: tensorflow-gpu, webgpu, tensorflow (CPU), wasm, cpu; the first that loads and passes a
// numeric self-check, forward and backward (tensorflow-gpu only when TensorFlow made a GPU device, webgpu only on a real
// adapter: a software one runs only when forced).
import * as tf from '@tensorflow/tfjs-core';
import { enableRelaxedSimd } from './ops/wasm_gemm.js';
import { useFastWasmKernels } from './ops/wasm_kernels.js';
// tfjs-core's Node bundle has no gradient functions; the union package's bundle registers them all
import '@tensorflow/tfjs';
import { createRequire } from 'node:module';
import {
  adapterFacts,
  adapterName,
  chromiumWebgpu,
  decideWebgpu,
  isSoftwareAdapter,
  probeAdapter,
  webgpuModuleUrl,
  webgpuUnavailable,
  type AdapterFacts,
} from './webgpu-adapter.js';

export type BackendName = 'tensorflow-gpu' | 'webgpu' | 'tensorflow' | 'wasm' | 'cpu';

/** On webgpu: the adapter (its facts, and whether it renders in software). */
export interface AdapterReport extends AdapterFacts {
  readonly software: boolean;
}

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
  /** On tensorflow-gpu: whether the products run in TF32 (tf32Note). */
  readonly tf32?: string;
  /** On webgpu: the adapter Dawn gave, with its buffer limits. */
  readonly adapter?: AdapterReport;
}

const ORDER: readonly BackendName[] = ['tensorflow-gpu', 'webgpu', 'tensorflow', 'wasm', 'cpu'];
const require = createRequire(import.meta.url);

let current: BackendReport | undefined;
let wasmGemm: { fma: boolean; why: string } | undefined;
let webgpuAdapter: AdapterReport | undefined;

function errorText(e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e);
  return msg.split('\n')[0] ?? msg;
}

const TF_PKG = {
  'tensorflow-gpu': '@tensorflow/tfjs-node-gpu',
  tensorflow: '@tensorflow/tfjs-node',
} as const;

/** The exact reason given when tfjs-node-gpu loads but TensorFlow made no GPU device (it then trains on the CPU). */
export const NO_GPU_DEVICE = 'tensorflow-gpu: loaded, but no GPU device (needs CUDA 11.2 and cuDNN 8.1)';

/** What the tensorflow candidates depend on; the real `require` and tfjs registry by default (tests pass fakes). */
export interface TensorflowFacts {
  /** require.resolve(pkg) succeeds. */
  readonly installed: (pkg: string) => boolean;
  /** require(pkg): the module; throws when its native library does not load. */
  readonly load: (pkg: string) => unknown;
  /** The tfjs backend the package registered as 'tensorflow' (tfjs-node's NodeJSKernelBackend). */
  readonly backend: () => unknown;
  /** The package that already registered 'tensorflow' in this process, if any. */
  readonly loaded: string | undefined;
  readonly env: Readonly<Record<string, string | undefined>>;
}

export type TensorflowProbe =
  | { readonly ok: true; readonly pkg: string; readonly gpu: boolean }
  | { readonly ok: false; readonly pkg?: string; readonly reason: string };

/**
 * Whether tfjs-node's backend runs on a GPU device. libtensorflow lists its devices when the binding starts:
 * NodeJSKernelBackend keeps the answer as `isUsingGpuDevice` (a boolean; the binding has it as a function).
 */
export function usesGpuDevice(backend: unknown): boolean {
  if (typeof backend !== 'object' || backend === null) return false;
  const b = backend as { isUsingGpuDevice?: unknown; binding?: { isUsingGpuDevice?: unknown } };
  if (typeof b.isUsingGpuDevice === 'boolean') return b.isUsingGpuDevice;
  if (typeof b.isUsingGpuDevice === 'function') return (b.isUsingGpuDevice as () => unknown).call(b) === true;
  const f = b.binding?.isUsingGpuDevice;
  return typeof f === 'function' && (f as () => unknown).call(b.binding) === true;
}

/**
 * Decides a tensorflow candidate from `f` alone. tensorflow-gpu counts only when a GPU device was created:
 * tfjs-node-gpu (libtensorflow 2.9.1, CUDA 11.2 + cuDNN 8.1) also loads on a machine with other CUDA versions, or
 * none, and then trains on the CPU. Once tfjs-node-gpu is loaded, 'tensorflow' is that same library on the CPU
 * (loading tfjs-node beside it would put two TensorFlows in one process).
 */
export function probeTensorflow(name: 'tensorflow-gpu' | 'tensorflow', f: TensorflowFacts): TensorflowProbe {
  if (name === 'tensorflow' && f.loaded) return { ok: true, pkg: f.loaded, gpu: false };
  const pkg = TF_PKG[name];
  const hidden = f.env['CUDA_VISIBLE_DEVICES'];
  if (name === 'tensorflow-gpu' && (hidden === '' || hidden === '-1'))
    return { ok: false, reason: `tensorflow-gpu: CUDA_VISIBLE_DEVICES='${hidden}' hides every GPU` };
  if (!f.installed(pkg)) return { ok: false, reason: `${pkg}: not installed` };
  try {
    f.load(pkg);
  } catch (e) {
    return { ok: false, reason: `${pkg}: installed but does not load (${errorText(e)})` };
  }
  if (name === 'tensorflow-gpu' && !usesGpuDevice(f.backend()))
    return { ok: false, pkg, reason: NO_GPU_DEVICE };
  return { ok: true, pkg, gpu: name === 'tensorflow-gpu' };
}

/**
 * On a GPU: TensorFlow multiplies float32 matrices in TF32 on Ampere and newer (10-bit mantissas in the products)
 * unless NVIDIA_TF32_OVERRIDE=0; the backend line says which.
 */
export function tf32Note(env: Readonly<Record<string, string | undefined>> = process.env): string {
  return env['NVIDIA_TF32_OVERRIDE'] === '0'
    ? 'TF32 off (NVIDIA_TF32_OVERRIDE=0): products in fp32'
    : 'TF32 is on by default on Ampere and newer GPUs (products with 10-bit mantissas); NVIDIA_TF32_OVERRIDE=0 keeps fp32 products';
}

/** The package that registered 'tensorflow' in this process. */
let tensorflowPkg: string | undefined;

const realFacts = (): TensorflowFacts => ({
  installed: (pkg) => {
    try {
      require.resolve(pkg);
      return true;
    } catch {
      return false;
    }
  },
  load: (pkg) => require(pkg) as unknown,
  // findBackend starts the registered factory (tfjs-node's binding) without making it the active backend
  backend: () => tf.findBackend('tensorflow'),
  loaded: tensorflowPkg,
  env: process.env,
});

/** A `navigator.gpu` of Dawn for Node (npm's webgpu), installed once, unless this runtime has its own. */
async function installNavigatorGpu(): Promise<GpuLike> {
  const g = globalThis as { navigator?: { gpu?: GpuLike } };
  if (g.navigator?.gpu) return g.navigator.gpu;
  const url = webgpuModuleUrl();
  if (!url) throw new Error('webgpu: the webgpu package (Dawn for Node) is not installed');
  const m = (await import(url)) as { create(o: string[]): GpuLike; globals: object };
  // GPUBufferUsage, GPUMapMode... as globals: tfjs-backend-webgpu uses them as a browser has them
  Object.assign(globalThis, m.globals);
  const gpu = m.create([]);
  if (g.navigator) Object.defineProperty(g.navigator, 'gpu', { value: gpu, configurable: true });
  else Object.defineProperty(globalThis, 'navigator', { value: { gpu }, configurable: true, writable: true });
  return gpu;
}

interface GpuLike {
  requestAdapter(o?: object): Promise<Parameters<typeof adapterFacts>[0] | null>;
}

/** Loads the package for a candidate; throws with a short reason when it cannot. */
async function register(name: BackendName, forced: boolean): Promise<string> {
  switch (name) {
    case 'webgpu': {
      const why = webgpuUnavailable();
      if (why) throw new Error(why);
      // unforced, the adapter is first asked for in a child process (Dawn's driver noise and crashes stay there);
      // Chromium's WebGPU (the desktop app's engine window) is asked in place: its GPU process keeps both away
      if (!forced && !chromiumWebgpu()) {
        const d = decideWebgpu(probeAdapter());
        if (!d.ok) throw new Error(d.reason);
      }
      const adapter = await (
        await installNavigatorGpu()
      ).requestAdapter({ powerPreference: 'high-performance' });
      if (!adapter) throw new Error('webgpu: Dawn found no adapter (no Vulkan, Metal or D3D12 GPU)');
      const facts = adapterFacts(adapter);
      webgpuAdapter = { ...facts, software: isSoftwareAdapter(facts) };
      if (!forced && webgpuAdapter.software)
        throw new Error(
          `webgpu: only a software adapter, ${adapterName(facts)} (DIGPT_BACKEND=webgpu uses it)`,
        );
      await import('@tensorflow/tfjs-backend-webgpu');
      return 'webgpu';
    }
    case 'tensorflow-gpu':
    case 'tensorflow': {
      const r = probeTensorflow(name, realFacts());
      // a package that loaded has registered 'tensorflow', GPU device or not
      if (r.pkg && (r.ok || r.reason === NO_GPU_DEVICE)) tensorflowPkg ??= r.pkg;
      if (!r.ok) throw new Error(r.reason);
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

/** A tiny product and softmax whose answers are known; catches a backend that loads but computes wrongly. */
async function selfCheck(): Promise<void> {
  const t = tf.tidy(() => {
    const a = tf.tensor2d([1, 2, 3, 4, 5, 6], [2, 3]);
    const b = tf.tensor2d([1, 0, -1, 2, 0.5, 1], [3, 2]);
    const m = tf.matMul(a, b);
    const s = tf.softmax(tf.tensor1d([0, Math.log(3)]));
    return tf.concat([m.reshape([-1]), s]);
  });
  const got = Array.from(await t.data());
  t.dispose();
  const want = [0.5, 7, 2, 16, 0.25, 0.75];
  for (let i = 0; i < want.length; i++) {
    if (Math.abs((got[i] ?? NaN) - (want[i] ?? 0)) > 1e-5)
      throw new Error(`self-check failed (got ${got.join(',')})`);
  }
}

/**
 * The loss of the backward self-check: sum(LayerNorm(GELU(x W)) * c), small fixed inputs. Returns the loss and its
 * gradients with respect to x and W, flattened into one tensor.
 */
function gradCheckValues(): tf.Tensor {
  return tf.tidy(() => {
    const seq = (n: number, a: number, b: number): number[] =>
      Array.from({ length: n }, (_, i) => Math.sin(a * i + b));
    const x = tf.tensor2d(seq(12, 0.7, 0.3), [3, 4]);
    const w = tf.tensor2d(seq(20, 1.3, -0.2), [4, 5]);
    const c = tf.tensor2d(seq(15, 0.9, 1.1), [3, 5]);
    const f = (xv: tf.Tensor, wv: tf.Tensor): tf.Scalar => {
      const h = tf.matMul(xv as tf.Tensor2D, wv as tf.Tensor2D);
      const g = tf.mul(tf.mul(h, 0.5), tf.add(tf.erf(tf.mul(h, Math.SQRT1_2)), 1));
      const { mean, variance } = tf.moments(g, -1, true);
      const y = tf.div(tf.sub(g, mean), tf.sqrt(tf.add(variance, 1e-5)));
      return tf.sum(tf.mul(y, c));
    };
    const { value, grads } = tf.valueAndGrads(f)([x, w]);
    return tf.concat([value.reshape([1]), ...grads.map((g) => g.reshape([-1]))]);
  });
}

/**
 * The backward self-check: the gradient of a tiny product + GELU + LayerNorm loss on this backend against the cpu
 * backend's (a backend can compute forward passes right and gradients wrong: all-zero gradients on one device,
 * tfjs#8590).
 */
async function gradCheck(tfName: string): Promise<void> {
  if (tfName === 'cpu') return;
  const t = gradCheckValues();
  const got = await t.data();
  t.dispose();
  await register('cpu', true);
  if (!(await tf.setBackend('cpu'))) throw new Error("self-check: tf.setBackend('cpu') failed");
  const r = gradCheckValues();
  const want = r.dataSync();
  r.dispose();
  if (!(await tf.setBackend(tfName))) throw new Error(`tf.setBackend('${tfName}') failed`);
  let worst = 0;
  let norm = 0;
  for (let i = 0; i < want.length; i++) {
    worst = Math.max(worst, Math.abs((got[i] ?? NaN) - (want[i] ?? 0)));
    norm = Math.max(norm, Math.abs(want[i] ?? 0));
  }
  if (!(worst <= 1e-3 * Math.max(1, norm)))
    throw new Error(
      `backward self-check failed: gradients differ from the cpu backend's by ${worst} (got ${Array.from(got.slice(0, 6)).join(',')}...)`,
    );
}

function parseForced(v: string | undefined): BackendName[] | undefined {
  if (v === undefined || v === '') return undefined;
  switch (v) {
    case 'tensorflow':
      return ['tensorflow-gpu', 'tensorflow'];
    case 'tensorflow-gpu':
    case 'webgpu':
    case 'wasm':
    case 'cpu':
      return [v];
    default:
      throw new Error(
        `DIGPT_BACKEND=${v}: unknown backend; use one of tensorflow, tensorflow-gpu, webgpu, wasm, cpu`,
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
      const tfName = await register(name, forcedList !== undefined);
      if (!(await tf.setBackend(tfName))) throw new Error(`tf.setBackend('${tfName}') failed`);
      await tf.ready();
      // the engine's wasm kernels from the first operation on: a computation must not change kernels (and rounding)
      // depending on whether a model op has run yet in this process (resumed runs must repeat losses exactly)
      if (tfName === 'wasm') useFastWasmKernels();
      await selfCheck();
      await gradCheck(tfName);
      current = {
        name,
        tfName,
        skipped,
        forced: forcedList !== undefined,
        ...(tfName === 'wasm' && wasmGemm
          ? { gemm: { kind: wasmGemm.fma ? 'fma' : 'mul+add', why: wasmGemm.why } }
          : {}),
        ...(name === 'tensorflow-gpu' ? { tf32: tf32Note() } : {}),
        ...(name === 'webgpu' && webgpuAdapter ? { adapter: webgpuAdapter } : {}),
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
  const tf32 = r.tf32 ? ` — ${r.tf32}` : '';
  const gpu = r.adapter
    ? ` — adapter: ${adapterName(r.adapter)}${r.adapter.software ? ', SOFTWARE (renders on the CPU: for tests, not for training)' : ''}; ` +
      `buffers: binding <= ${mib(r.adapter.maxStorageBufferBindingSize)}, buffer <= ${mib(r.adapter.maxBufferSize)}`
    : '';
  return `backend: ${r.name}${r.forced ? ' (forced by DIGPT_BACKEND)' : ''}${gpu}${why ? ` — not used: ${why}` : ''}${gemm}${tf32}`;
}

function mib(bytes: number): string {
  return bytes >= 2 ** 30 ? `${(bytes / 2 ** 30).toFixed(1)} GiB` : `${Math.round(bytes / 2 ** 20)} MiB`;
}

/** True when matMuls must avoid transpose flags and batch dimensions to stay on XNNPACK. */
export function needsPlainMatMul(): boolean {
  return tf.getBackend() === 'wasm';
}
