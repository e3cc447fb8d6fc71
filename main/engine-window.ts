// GPU jobs in the desktop app, without Electron: a job's engine in a hidden engine window's dedicated Worker, where
// Chromium's WebGPU is `navigator.gpu`, behind the job host's Transport (app/jobs/host.ts). main/engine-window-
// electron.ts gives this the real BrowserWindow, MessageChannelMain and session; test/main/ gives fakes.
//
// Why: dawn.node cannot run inside Electron (it maps buffers as external ArrayBuffers, node-webgpu#5), so a webgpu
// job of the desktop app runs in a Chromium renderer. One window per job, never the UI window: its page only starts
// the worker (the only place with Node), GPU work happens in Chromium's GPU process, so ending a job is destroying its
// window, and a crashed renderer or GPU process fails that job only.
//
// The wire: main holds one end of a MessageChannelMain and posts the other to the window (webContents.postMessage);
// its preload hands the port to the page (window.postMessage), the page to its worker. On that port main sends
// `init` first (the job's environment, the engine bundle's path), the worker answers `ready` once the engine listens,
// and from then on the port carries the job protocol (app/jobs/protocol.ts) both ways, plus the worker's `exit` and
// `crash`. Job messages posted before `ready` are held here and sent in order after it.
import { EventEmitter } from 'node:events';
import { readFile } from 'node:fs/promises';
import type { GpuLauncher, Transport, TransportEvents } from '../app/jobs/host.js';
import type { BackendInfo } from '../app/api/contract.js';
import type { HostMessage, WorkerEvent } from '../app/jobs/protocol.js';
import { APP_SCHEME } from './app-protocol.js';
import {
  ENGINE_ERROR_TITLE,
  ENGINE_HOST,
  ENGINE_PORT_CHANNEL,
  ENGINE_URL,
  isEngineControl,
  type EngineControl,
} from './engine-window-wire.js';
import { ENGINE_CONTENT_SECURITY_POLICY } from './security.js';

export { ENGINE_PARTITION, ENGINE_URL } from './engine-window-wire.js';

/** The part of Electron's MessagePortMain used here. */
export interface EnginePort {
  postMessage(message: unknown): void;
  on(event: 'message', listener: (event: { data: unknown }) => void): this;
  on(event: 'close', listener: () => void): this;
  start(): void;
  close(): void;
}

/** The part of Electron's WebContents used here (P: its MessagePortMain). */
export interface EngineContents<P extends EnginePort = EnginePort> {
  readonly id: number;
  postMessage(channel: string, message: unknown, transfer: P[]): void;
  getOSProcessId(): number;
  on(event: 'did-finish-load', listener: () => void): this;
  on(
    event: 'did-fail-load',
    listener: (
      event: unknown,
      errorCode: number,
      errorDescription: string,
      validatedURL: string,
      isMainFrame: boolean,
    ) => void,
  ): this;
  on(
    event: 'render-process-gone',
    listener: (event: unknown, details: { reason: string; exitCode: number }) => void,
  ): this;
  on(event: 'page-title-updated', listener: (event: unknown, title: string) => void): this;
}

/** The part of Electron's BrowserWindow used here. */
export interface EngineWindow<P extends EnginePort = EnginePort> {
  readonly webContents: EngineContents<P>;
  loadURL(url: string): Promise<void>;
  destroy(): void;
  isDestroyed(): boolean;
  on(event: 'closed', listener: () => void): this;
}

export interface EngineWindowParts<P extends EnginePort = EnginePort> {
  /** A new hidden engine window (engineWebPreferences, its navigation denied); it has not loaded anything yet. */
  createWindow(): EngineWindow<P>;
  /** A new MessageChannelMain. */
  createChannel(): { port1: P; port2: P };
  /** dist/main/engine.cjs: the job engine (app/worker/entry.ts) as CommonJS, which the worker's Node requires. */
  engineEntry: string;
  /** How long the worker may take to say `ready` (its engine loaded) before the job fails; 60 s by default. */
  readyTimeoutMs?: number;
  /** For the log: the renderer's failures. */
  log?: { error(message: string): void };
}

class EngineWindowTransport<P extends EnginePort> extends EventEmitter<TransportEvents> implements Transport {
  readonly kind = 'window';
  private readonly port: P;
  private held: HostMessage[] | null = [];
  private gone = false;
  private rendererPid: number | undefined;
  private readonly timer: ReturnType<typeof setTimeout>;

  constructor(
    private readonly window: EngineWindow<P>,
    parts: EngineWindowParts<P>,
    env: Record<string, string | undefined>,
  ) {
    super();
    const log = parts.log ?? console;
    const { port1, port2 } = parts.createChannel();
    this.port = port1;
    port1.on('message', ({ data }) => this.onPortMessage(data));
    // the worker's end is gone (its renderer, or a worker that never took it) while the job runs; a little later, so
    // that render-process-gone, when that is why, says so first
    port1.on('close', () => {
      setTimeout(() => this.fail('the engine window closed its channel'), 250);
    });
    port1.start();
    // queued on the channel until the worker starts its end: the first thing it reads
    port1.postMessage({
      digptEngine: 'init',
      entry: parts.engineEntry,
      // unset variables are left out, as child_process.fork leaves them out
      env: Object.fromEntries(Object.entries(env).filter((e): e is [string, string] => e[1] !== undefined)),
    } satisfies EngineControl);

    const contents = window.webContents;
    let portSent = false;
    contents.on('did-finish-load', () => {
      // once: the port can be transferred only once (a reload would find no worker end to take)
      if (this.gone || portSent) return;
      portSent = true;
      this.rendererPid = contents.getOSProcessId();
      // the preload listens from before the page's scripts run; it hands the port to the page, the page to its worker
      contents.postMessage(ENGINE_PORT_CHANNEL, null, [port2]);
    });
    contents.on('did-fail-load', (_e, code, description, url, isMainFrame) => {
      if (isMainFrame) this.fail(`the engine window could not load ${url}: ${description} (${code})`);
    });
    contents.on('render-process-gone', (_e, details) => {
      log.error(`engine window: renderer gone (${details.reason}, exit code ${details.exitCode})`);
      this.fail(`the engine window's renderer is gone (${details.reason}, exit code ${details.exitCode})`);
    });
    contents.on('page-title-updated', (_e, title) => {
      if (title.startsWith(ENGINE_ERROR_TITLE)) this.fail(title.slice(ENGINE_ERROR_TITLE.length));
    });
    window.on('closed', () => this.fail('the engine window was closed'));
    const timeoutMs = parts.readyTimeoutMs ?? 60_000;
    this.timer = setTimeout(
      () => this.fail(`the engine window's worker did not start within ${timeoutMs / 1000} s`),
      timeoutMs,
    );
    window.loadURL(ENGINE_URL).catch((e: unknown) => {
      this.fail(
        `the engine window could not load ${ENGINE_URL}: ${e instanceof Error ? e.message : String(e)}`,
      );
    });
  }

  /** The renderer's process id once its page has loaded (a run's lock names the worker's process.pid: this one). */
  get pid(): number | undefined {
    return this.rendererPid;
  }

  post(m: HostMessage): void {
    if (this.gone) return;
    if (this.held) this.held.push(m);
    else this.port.postMessage(m);
  }

  async terminate(): Promise<void> {
    // Chromium's GPU process holds the GPU work: destroying the renderer mid-step ends the job, not the app
    this.finish({ code: null, signal: 'SIGKILL' });
  }

  private onPortMessage(data: unknown): void {
    if (this.gone) return;
    if (!isEngineControl(data)) {
      this.emit('message', data as WorkerEvent);
      return;
    }
    switch (data.digptEngine) {
      case 'ready': {
        clearTimeout(this.timer);
        const held = this.held ?? [];
        this.held = null;
        for (const m of held) this.port.postMessage(m);
        break;
      }
      case 'exit':
        this.finish({ code: data.code, signal: null });
        break;
      case 'crash':
        this.fail(data.message, data.name);
        break;
      case 'init':
        break;
    }
  }

  /** A failure of the window or its worker: the job's error, then its exit (once, whatever reports it first). */
  private fail(message: string, name = 'EngineWindowError'): void {
    if (this.gone) return;
    this.emit('crash', Object.assign(new Error(message), { name }));
    this.finish({ code: 1, signal: null });
  }

  private finish(exit: { code: number | null; signal: NodeJS.Signals | null }): void {
    if (this.gone) return;
    this.gone = true;
    this.held = null;
    clearTimeout(this.timer);
    this.port.close();
    if (!this.window.isDestroyed()) this.window.destroy();
    this.emit('exit', exit);
  }
}

/** What routing a job to the engine window depends on; the real ones in main/engine-window-electron.ts. */
export interface RouteFacts {
  /** require.resolve(pkg) succeeds in the main process. */
  isInstalled(pkg: string): boolean;
  /** Chromium's WebGPU status (app.getGPUFeatureStatus().webgpu: 'enabled', 'disabled_software'...), if it says. */
  webgpuStatus(): string | undefined;
}

/**
 * Whether a job goes to the engine window, decided as app/jobs/host.ts decides thread or process (without tfjs):
 * DIGPT_BACKEND=webgpu does; DIGPT_JOB_PROCESS=1 or another DIGPT_BACKEND does not; unset, it does when tensorflow-gpu
 * cannot run (tfjs-node-gpu is not installed, CUDA_VISIBLE_DEVICES hides every GPU, or an earlier job found that it
 * does not load or makes no GPU device: no CUDA 11.2) and Chromium says its WebGPU is hardware-accelerated.
 */
export function engineWindowRoute(
  env: Readonly<Record<string, string | undefined>>,
  facts: RouteFacts,
  tensorflowGpuFailed = false,
): { ok: boolean; why: string } {
  if (env['DIGPT_JOB_PROCESS'] === '1') return { ok: false, why: 'DIGPT_JOB_PROCESS=1' };
  const forced = env['DIGPT_BACKEND'];
  if (forced === 'webgpu') return { ok: true, why: "DIGPT_BACKEND=webgpu: Chromium's WebGPU" };
  if (forced) return { ok: false, why: `DIGPT_BACKEND=${forced}` };
  const hidden = env['CUDA_VISIBLE_DEVICES'] === '' || env['CUDA_VISIBLE_DEVICES'] === '-1';
  if (facts.isInstalled('@tensorflow/tfjs-node-gpu') && !hidden && !tensorflowGpuFailed)
    return {
      ok: false,
      why: '@tensorflow/tfjs-node-gpu is installed: tensorflow-gpu first, in a utility process',
    };
  const status = facts.webgpuStatus();
  if (status === undefined || !status.startsWith('enabled'))
    return { ok: false, why: `Chromium's WebGPU is ${status ?? 'not reported'}` };
  return { ok: true, why: `webgpu (Chromium's WebGPU is ${status})` };
}

/** True when a job's backend report shows tensorflow-gpu tried and skipped: it does not load, or made no GPU device. */
export function tensorflowGpuSkipped(backend: Pick<BackendInfo, 'skipped'>): boolean {
  return backend.skipped.some(
    (s) => s.name === 'tensorflow-gpu' && !/not installed|hides every GPU/.test(s.reason),
  );
}

/** The job host's GPU launcher (app/jobs/host.ts setGpuLauncher) over the engine window's parts. */
export interface EngineWindowLauncher extends GpuLauncher {
  /** Hears every job's backend report: one that skipped tensorflow-gpu sends later GPU jobs here. */
  noteBackend(backend: Pick<BackendInfo, 'skipped'>): void;
}

export function engineWindowLauncher<P extends EnginePort>(
  parts: EngineWindowParts<P>,
  facts: RouteFacts,
): EngineWindowLauncher {
  let tensorflowGpuFailed = false;
  return {
    accepts: (env) => engineWindowRoute(env, facts, tensorflowGpuFailed).ok,
    launch: (env) => new EngineWindowTransport(parts.createWindow(), parts, env),
    noteBackend(backend) {
      if (tensorflowGpuSkipped(backend)) tensorflowGpuFailed = true;
    },
  };
}

/**
 * A process launcher whose jobs' backend reports go to `note` too (main/index.ts: the utility processes' reports teach
 * the engine window launcher that tensorflow-gpu cannot run here).
 */
export function watchBackends<A extends unknown[]>(
  launch: (...args: A) => Transport,
  note: (backend: BackendInfo) => void,
): (...args: A) => Transport {
  return (...args) => {
    const t = launch(...args);
    t.on('message', (e) => {
      if (e.type === 'backend') note(e.backend);
    });
    return t;
  };
}

/** The engine page: one script, no content. */
const PAGE_HTML = `<!doctype html>
<meta charset="utf-8">
<title>D-iGPT engine</title>
<script src="page.js"></script>
`;

/**
 * The page's script: takes the one port its preload posts (from its own window, with ENGINE_PORT_CHANNEL), starts the
 * engine worker and hands it the port. A worker that fails to load is reported in the title (main reads it).
 */
export const ENGINE_PAGE_SCRIPT = `'use strict';
let started = false;
window.addEventListener('message', (event) => {
  if (started || event.source !== window || event.data !== ${JSON.stringify(ENGINE_PORT_CHANNEL)}) return;
  if (event.ports.length !== 1) return;
  started = true;
  const worker = new Worker('engine-worker.js', { name: 'D-iGPT engine' });
  worker.addEventListener('error', (e) => {
    document.title = ${JSON.stringify(ENGINE_ERROR_TITLE)} + (e.message || 'its script did not load');
  });
  worker.postMessage(${JSON.stringify(ENGINE_PORT_CHANNEL)}, [event.ports[0]]);
});
`;

/** The worker script's CSP: its own code; WebAssembly compiles (the wasm backend, if webgpu does not start). */
const WORKER_CSP = "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'";

/**
 * protocol.handle's handler of the engine session: app://engine/ serves exactly the page, its script and the worker
 * script (`workerScript`: dist/main/engine-worker.js); anything else is 404, and only GET and HEAD are answered.
 */
export function createEnginePageHandler(
  workerScript: string,
  read: (file: string) => Promise<string> = (f) => readFile(f, 'utf8'),
): (request: { url: string; method: string }) => Promise<Response> {
  const send = (body: string, type: string, csp: string, head: boolean): Response =>
    new Response(head ? null : body, {
      status: 200,
      headers: { 'Content-Type': type, 'Content-Security-Policy': csp, 'X-Content-Type-Options': 'nosniff' },
    });
  const refuse = (status: number): Response =>
    new Response('', {
      status,
      headers: { 'Content-Type': 'text/plain', 'Content-Security-Policy': ENGINE_CONTENT_SECURITY_POLICY },
    });
  return async (request) => {
    if (request.method !== 'GET' && request.method !== 'HEAD') return refuse(405);
    let u: URL;
    try {
      u = new URL(request.url);
    } catch {
      return refuse(400);
    }
    if (u.protocol !== `${APP_SCHEME}:` || u.host !== ENGINE_HOST) return refuse(404);
    const head = request.method === 'HEAD';
    switch (u.pathname) {
      case '/index.html':
        return send(PAGE_HTML, 'text/html; charset=utf-8', ENGINE_CONTENT_SECURITY_POLICY, head);
      case '/page.js':
        return send(
          ENGINE_PAGE_SCRIPT,
          'text/javascript; charset=utf-8',
          ENGINE_CONTENT_SECURITY_POLICY,
          head,
        );
      case '/engine-worker.js':
        return send(await read(workerScript), 'text/javascript; charset=utf-8', WORKER_CSP, head);
      default:
        return refuse(404);
    }
  };
}
