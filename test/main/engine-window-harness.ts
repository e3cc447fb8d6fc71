// Runs one job through the engine window's adapters with Node standing in for Chromium (test/main/engine-window-
// bundle.test.ts): main/engine-window.ts's transport on one end of a MessageChannel; on the other the bundled worker
// script (dist/main/engine-worker.js) run as a classic script on a global scope dressed as a dedicated Worker's (its
// events, close, Blink's number-returning timers, a global require), which requires the bundled engine
// (dist/main/engine.cjs) as the worker's Node does.
// Usage: node --import tsx engine-window-harness.ts ENGINE_WORKER_JS ENGINE_CJS JOB_JSON REPORT_FILE
import { appendFileSync, readFileSync } from 'node:fs';
import { EventEmitter } from 'node:events';
import { createRequire } from 'node:module';
import { runInThisContext } from 'node:vm';
import { MessageChannel, type MessagePort } from 'node:worker_threads';
import { JobHandle } from '../../app/jobs/host.js';
import type { JobSpec } from '../../app/jobs/protocol.js';
import { engineWindowLauncher, type EnginePort, type EngineWindow } from '../../main/engine-window.js';

const [workerScript = '', engineEntry = '', jobJson = '', reportFile = ''] = process.argv.slice(2);
// the worker script replaces process.exit (as it does in the engine window): keep the real one for the end
const exit = process.exit.bind(process);
const report = (o: unknown): void => appendFileSync(reportFile, `${JSON.stringify(o)}\n`);

// --- the worker: this global scope dressed as a dedicated Worker's, this process's `process` as its Node's ---
const scope = new EventTarget();
const nodeSetTimeout = setTimeout;
Object.assign(globalThis, {
  addEventListener: scope.addEventListener.bind(scope),
  removeEventListener: scope.removeEventListener.bind(scope),
  close: () => report({ workerClosed: true }),
  // Blink's timers return numbers (Node's clearTimeout takes a Timeout's number too)
  setTimeout: (cb: () => void, ms?: number) => Number(nodeSetTimeout(cb, ms)),
  require: createRequire(import.meta.url),
});
runInThisContext(readFileSync(workerScript, 'utf8'), { filename: workerScript });

// --- main: MessageChannelMain's ends (messages as { data }), a window whose page hands port2 to the worker ---
class MainPort extends EventEmitter implements EnginePort {
  constructor(readonly raw: MessagePort) {
    super();
  }
  override on(event: string, listener: (...args: never[]) => void): this {
    if (event === 'message')
      this.raw.on('message', (data: unknown) => (listener as (e: unknown) => void)({ data }));
    else this.raw.on(event, listener as () => void);
    return this;
  }
  postMessage(message: unknown): void {
    this.raw.postMessage(message);
  }
  start(): void {
    this.raw.start();
  }
  close(): void {
    this.raw.close();
  }
}

class Contents extends EventEmitter {
  readonly id = 2;
  postMessage(channel: string, _message: unknown, transfer: MainPort[]): void {
    // what the preload and the page do: the port reaches the worker's scope as a message
    const event = Object.assign(new Event('message'), { data: channel, ports: transfer.map((p) => p.raw) });
    scope.dispatchEvent(event);
  }
  getOSProcessId(): number {
    return process.pid;
  }
}

class Window extends EventEmitter {
  readonly webContents = new Contents();
  private destroyed = false;
  async loadURL(url: string): Promise<void> {
    report({ loaded: url });
    setImmediate(() => this.webContents.emit('did-finish-load'));
  }
  destroy(): void {
    this.destroyed = true;
    report({ destroyed: true });
  }
  isDestroyed(): boolean {
    return this.destroyed;
  }
}

const launcher = engineWindowLauncher(
  {
    createWindow: () => new Window() as unknown as EngineWindow<MainPort>,
    createChannel: () => {
      const c = new MessageChannel();
      return { port1: new MainPort(c.port1), port2: new MainPort(c.port2) };
    },
    engineEntry,
  },
  { isInstalled: () => false, webgpuStatus: () => undefined },
);
const handle = new JobHandle(launcher.launch({ ...process.env }));
handle.on('event', (e) => {
  if (e.type === 'step')
    report({
      type: e.type,
      step: e.record.step,
      loss: e.record.loss,
      order: e.order?.constructor.name,
      clusterError: e.clusterError?.constructor.name,
    });
  else if (e.type === 'backend') report({ type: e.type, name: e.backend.name });
  else if (e.type === 'error') report({ type: e.type, message: e.message });
  else report({ type: e.type });
});
handle.send({ type: 'start', job: JSON.parse(jobJson) as JobSpec });
void handle.done().then((r) => {
  report({ done: r, pid: handle.pid === process.pid });
  exit(0);
});
