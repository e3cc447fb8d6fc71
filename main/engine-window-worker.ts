// Inside the engine window's dedicated Worker (main/engine-window.ts), without Electron: takes the job's port from the
// page, reads `init` (the job's environment, the engine bundle's path), lays a forked child's channel over the port
// (main/fork-channel.ts, as a utility process lays it over process.parentPort), loads the engine, says `ready`.
//
// Why: the job engine (app/worker/entry.ts) speaks a worker thread's parentPort or a forked child's process.send; a
// Chromium worker with Node has neither, and Chromium's own WebGPU only there. Its process.exit and uncaught errors
// become `exit` and `crash` on the port, as the page cannot tell main anything else.
import { installForkChannel, type ParentPortLike, type ProcessLike } from './fork-channel.js';
import { ENGINE_PORT_CHANNEL, isEngineControl, type EngineControl } from './engine-window-wire.js';

type Listener = (event: { data: unknown }) => void;

/** The DOM MessagePort the page hands over, as far as used. */
export interface WorkerPort {
  addEventListener(type: 'message', listener: Listener): void;
  removeEventListener(type: 'message', listener: Listener): void;
  postMessage(message: unknown): void;
  start(): void;
}

/** The worker's global scope (DedicatedWorkerGlobalScope), as far as used. */
export interface WorkerScope {
  addEventListener(
    type: 'message',
    listener: (event: { data: unknown; ports: readonly WorkerPort[] }) => void,
  ): void;
  addEventListener(
    type: 'error',
    listener: (event: { message: string; error?: unknown; preventDefault(): void }) => void,
  ): void;
  addEventListener(
    type: 'unhandledrejection',
    listener: (event: { reason: unknown; preventDefault(): void }) => void,
  ): void;
  removeEventListener(
    type: 'message',
    listener: (event: { data: unknown; ports: readonly WorkerPort[] }) => void,
  ): void;
  /** Ends the worker (after what it posted has left). */
  close(): void;
}

/** The worker's `process` (Electron's, in a worker with Node), as far as used. */
export interface WorkerProcess extends ProcessLike {
  env: Record<string, string | undefined>;
  exitCode?: number | string | null | undefined;
  exit: (code?: number | string | null) => never;
}

/** A fork channel's view of a DOM MessagePort (its events are MessageEvents, whose `data` is the message). */
function parentPortOf(port: WorkerPort): ParentPortLike {
  return {
    on: (_event, listener) => port.addEventListener('message', listener),
    removeListener: (_event, listener) => port.removeEventListener('message', listener),
    postMessage: (message) => port.postMessage(message),
  };
}

function errorOf(e: unknown): { name: string; message: string } {
  return e instanceof Error ? { name: e.name, message: e.message } : { name: 'Error', message: String(e) };
}

/** Makes `env` hold exactly `next` (the job's environment, as a forked child would get it). */
function replaceEnv(env: Record<string, string | undefined>, next: Record<string, string>): void {
  for (const key of Object.keys(env)) if (!(key in next)) delete env[key];
  Object.assign(env, next);
}

/**
 * Runs the worker side: `load(entry)` requires the engine bundle (dist/main/engine.cjs) once the channel exists, so
 * that its processLink finds process.send; messages main sends before `ready` wait in main.
 */
export function startEngineWorker(
  scope: WorkerScope,
  proc: WorkerProcess,
  load: (entry: string) => void,
): void {
  const onPort = (event: { data: unknown; ports: readonly WorkerPort[] }): void => {
    const port = event.ports[0];
    if (event.data !== ENGINE_PORT_CHANNEL || event.ports.length !== 1 || !port) return;
    scope.removeEventListener('message', onPort);
    run(port);
  };
  scope.addEventListener('message', onPort);

  function run(port: WorkerPort): void {
    let exited = false;
    const control = (m: EngineControl): void => {
      if (!exited) port.postMessage(m);
    };
    const exit = (code: number): void => {
      if (exited) return;
      control({ digptEngine: 'exit', code });
      exited = true;
      scope.close();
    };
    // the engine's own exits (after its last event, or when it crashed): main destroys the window on `exit`
    proc.exit = ((code?: number | string | null) => exit(Number(code ?? proc.exitCode ?? 0) || 0)) as never;
    const crash = (e: unknown): void => {
      const { name, message } = errorOf(e);
      // the job host words it ('engine worker crashed: ...')
      control({ digptEngine: 'crash', name, message });
    };
    scope.addEventListener('error', (event) => {
      event.preventDefault();
      crash(event.error ?? new Error(event.message));
    });
    scope.addEventListener('unhandledrejection', (event) => {
      event.preventDefault();
      crash(event.reason);
    });

    const onInit = ({ data }: { data: unknown }): void => {
      if (!isEngineControl(data) || data.digptEngine !== 'init') return;
      port.removeEventListener('message', onInit);
      replaceEnv(proc.env, data.env);
      const channel = installForkChannel(proc, parentPortOf(port));
      try {
        load(data.entry);
      } catch (e) {
        // what a job process says when its worker does not load (app/worker/boot.mjs), then its exit
        const { name, message } = errorOf(e);
        port.postMessage({ seq: -1, type: 'error', name, message: `engine worker crashed: ${message}` });
        exit(1);
        return;
      }
      // the engine listens now: main sends what it held, 'start' first
      channel.start();
      control({ digptEngine: 'ready' });
    };
    port.addEventListener('message', onInit);
    port.start();
  }
}

/** A Blink timer id dressed as Node's Timeout (ref, unref, hasRef), which the engine's Node code calls. */
export function nodeStyleTimers(timers: {
  setTimeout(cb: () => void, ms?: number): unknown;
  clearTimeout(id: unknown): void;
}): {
  setTimeout(cb: (...args: unknown[]) => void, ms?: number, ...args: unknown[]): unknown;
  clearTimeout(t: unknown): void;
} | null {
  const probe = timers.setTimeout(() => undefined, 0);
  timers.clearTimeout(probe);
  // Node's own already (an object with unref): nothing to do
  if (typeof probe === 'object' && probe !== null) return null;
  class Timeout {
    constructor(readonly id: unknown) {}
    ref(): this {
      return this;
    }
    // a worker lives until its window goes: an unref'd timer still fires, as it would in a process that others hold
    unref(): this {
      return this;
    }
    hasRef(): boolean {
      return true;
    }
    [Symbol.toPrimitive](): unknown {
      return this.id;
    }
  }
  return {
    setTimeout: (cb, ms, ...args) => new Timeout(timers.setTimeout(() => cb(...args), ms)),
    clearTimeout: (t) => timers.clearTimeout(t instanceof Timeout ? t.id : t),
  };
}
