// What WebGPU adapter Dawn (npm's `webgpu`, dawn.node) offers on this machine, asked in a throw-away Node process, and
// whether it is a real GPU or a software one (SwiftShader, llvmpipe, Dawn's fallback). tfjs-free and Node-only, so the
// job host may import it (app/jobs/host.ts runs GPU jobs in a child process) as well as the backend picker.
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';

/** The facts of an adapter the picker and the backend line use (GPUAdapterInfo and two GPUSupportedLimits). */
export interface AdapterFacts {
  readonly vendor: string;
  readonly architecture: string;
  readonly device: string;
  readonly description: string;
  /** GPUAdapterInfo.isFallbackAdapter (or the adapter's own, older flag): Dawn's CPU fallback. */
  readonly isFallbackAdapter: boolean;
  readonly maxStorageBufferBindingSize: number;
  readonly maxBufferSize: number;
}

/** What a probe found: an adapter, none, or why it could not ask. */
export type AdapterProbe =
  { readonly ok: true; readonly adapter: AdapterFacts } | { readonly ok: false; readonly reason: string };

const SOFTWARE = /swiftshader|llvmpipe|lavapipe|softpipe|software|microsoft basic render/i;

/**
 * True for an adapter that renders on the CPU: Dawn's fallback flag, or a vendor/architecture/device/description
 * naming SwiftShader, llvmpipe/lavapipe or Microsoft's Basic Render Driver. It is never picked unless forced.
 */
export function isSoftwareAdapter(a: AdapterFacts): boolean {
  return (
    a.isFallbackAdapter || [a.vendor, a.architecture, a.device, a.description].some((s) => SOFTWARE.test(s))
  );
}

/** The adapter in words: "google swiftshader (SwiftShader driver 5.0.0)". */
export function adapterName(a: AdapterFacts): string {
  const what = [a.vendor, a.architecture].filter((s) => s !== '').join(' ') || 'unknown adapter';
  const more = a.description || a.device;
  return more ? `${what} (${more})` : what;
}

/** Reads an adapter's facts (a GPUAdapter of dawn.node, or of a browser). */
export function adapterFacts(adapter: {
  info?: Record<string, unknown>;
  isFallbackAdapter?: unknown;
  limits: { maxStorageBufferBindingSize: number; maxBufferSize: number };
}): AdapterFacts {
  const i = adapter.info ?? {};
  const s = (k: string): string => (typeof i[k] === 'string' ? (i[k] as string) : '');
  return {
    vendor: s('vendor'),
    architecture: s('architecture'),
    device: s('device'),
    description: s('description'),
    isFallbackAdapter: i['isFallbackAdapter'] === true || adapter.isFallbackAdapter === true,
    maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize,
    maxBufferSize: adapter.limits.maxBufferSize,
  };
}

const require = createRequire(import.meta.url);

/** The file URL of npm's webgpu, or undefined when it is not installed. */
export function webgpuModuleUrl(): string | undefined {
  try {
    return pathToFileURL(require.resolve('webgpu')).href;
  } catch {
    return undefined;
  }
}

/** What chromiumWebgpu looks at: the runtime's versions and its navigator. */
export interface RuntimeFacts {
  readonly versions: Readonly<Record<string, string | undefined>>;
  readonly navigator?: { readonly gpu?: unknown } | undefined;
}

const thisRuntime = (): RuntimeFacts => ({
  versions: process.versions,
  navigator: (globalThis as { navigator?: { gpu?: unknown } }).navigator,
});

/**
 * True inside an Electron renderer or its worker (the desktop app's engine window, main/engine-window.ts): Chromium's
 * own WebGPU is `navigator.gpu` there, so webgpu runs without dawn.node and its adapter is asked in place.
 */
export function chromiumWebgpu(r: RuntimeFacts = thisRuntime()): boolean {
  const gpu = r.navigator?.gpu;
  return r.versions['electron'] !== undefined && typeof gpu === 'object' && gpu !== null;
}

/** Why webgpu cannot run in this process at all, or undefined. */
export function webgpuUnavailable(r: RuntimeFacts = thisRuntime()): string | undefined {
  if (chromiumWebgpu(r)) return undefined;
  // dawn.node hands mapped buffers to JS as external ArrayBuffers, which Electron 21+ forbids (node-webgpu#5)
  if (r.versions['electron']) return 'webgpu: dawn.node cannot map buffers inside Electron (node-webgpu#5)';
  if (!webgpuModuleUrl()) return 'webgpu: the webgpu package (Dawn for Node) is not installed';
  return undefined;
}

/**
 * Asks Dawn for the high-performance adapter in a child Node process: Dawn prints its Vulkan loader's complaints
 * ("Found no drivers!") straight to stderr, which must not reach the terminal of every job on a machine without a GPU,
 * and a driver that crashes takes only the child down. One answer per process.
 */
let probed: AdapterProbe | undefined;
export function probeAdapter(env: Readonly<Record<string, string | undefined>> = process.env): AdapterProbe {
  if (probed) return probed;
  const why = webgpuUnavailable();
  if (why) return (probed = { ok: false, reason: why });
  // process.execPath is the Electron binary there, not a Node to ask Dawn with
  if (chromiumWebgpu())
    return (probed = {
      ok: false,
      reason: "webgpu: inside Electron Chromium's navigator.gpu is asked in place",
    });
  const script = `
    const { create } = await import(${JSON.stringify(webgpuModuleUrl())});
    const a = await create([]).requestAdapter({ powerPreference: 'high-performance' });
    const i = a ? a.info : undefined;
    process.stdout.write(JSON.stringify(a ? {
      info: { vendor: i.vendor, architecture: i.architecture, device: i.device, description: i.description,
              isFallbackAdapter: i.isFallbackAdapter },
      isFallbackAdapter: a.isFallbackAdapter,
      limits: { maxStorageBufferBindingSize: a.limits.maxStorageBufferBindingSize, maxBufferSize: a.limits.maxBufferSize },
    } : null) + '\\n');
    process.exit(0);`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
    env: { ...env },
    encoding: 'utf8',
    timeout: 30_000,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const line = (r.stdout ?? '').trim().split('\n').pop() ?? '';
  if (r.status !== 0 || line === '') {
    const err = (r.stderr ?? '').trim().split('\n').pop() ?? '';
    return (probed = {
      ok: false,
      reason: `webgpu: asking Dawn for an adapter failed (${r.signal ? `killed by ${r.signal}` : `exit ${r.status}`}${err ? `: ${err}` : ''})`,
    });
  }
  const raw = JSON.parse(line) as Parameters<typeof adapterFacts>[0] | null;
  if (raw === null)
    return (probed = { ok: false, reason: 'webgpu: Dawn found no adapter (no Vulkan, Metal or D3D12 GPU)' });
  return (probed = { ok: true, adapter: adapterFacts(raw) });
}

/**
 * Whether an unforced pick may take webgpu: a real adapter only. A software adapter is reported and skipped (it runs,
 * slowly, only when DIGPT_BACKEND=webgpu forces it: the tests do, on SwiftShader).
 */
export function decideWebgpu(p: AdapterProbe): { ok: true } | { ok: false; reason: string } {
  if (!p.ok) return p;
  if (isSoftwareAdapter(p.adapter))
    return {
      ok: false,
      reason: `webgpu: only a software adapter, ${adapterName(p.adapter)} (DIGPT_BACKEND=webgpu uses it)`,
    };
  return { ok: true };
}
