// GPU jobs in the desktop app's hidden engine window (main/engine-window.ts and its worker side), over fakes of
// BrowserWindow, webContents, MessageChannelMain and the worker's globals; the route, the page, its policies.
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { runInNewContext } from 'node:vm';
import { afterEach, describe, it } from 'node:test';
import {
  JobHandle,
  setGpuLauncher,
  startJob,
  type Transport,
  type TransportEvents,
} from '../../app/jobs/host.js';
import type { HostMessage, WorkerEvent } from '../../app/jobs/protocol.js';
import { APP_SCHEME, APP_URL } from '../../main/app-protocol.js';
import {
  createEnginePageHandler,
  ENGINE_PAGE_SCRIPT,
  engineWindowLauncher,
  engineWindowRoute,
  tensorflowGpuSkipped,
  watchBackends,
  type EngineContents,
  type EnginePort,
  type EngineWindow,
  type RouteFacts,
} from '../../main/engine-window.js';
import {
  ENGINE_ERROR_TITLE,
  ENGINE_PARTITION,
  ENGINE_PORT_CHANNEL,
  ENGINE_URL,
} from '../../main/engine-window-wire.js';
import {
  nodeStyleTimers,
  startEngineWorker,
  type WorkerPort,
  type WorkerProcess,
  type WorkerScope,
} from '../../main/engine-window-worker.js';
import { Channels } from '../../main/channels.js';
import { createIpcRouter, UNKNOWN_SENDER } from '../../main/ipc.js';
import {
  createSenderCheck,
  engineWebPreferences,
  ENGINE_CONTENT_SECURITY_POLICY,
  isNavigationAllowed,
  secureWebPreferences,
  windowOpenPolicy,
} from '../../main/security.js';
import { FakeDialogs, FakeWorkbench, MemoryLog } from './fakes.js';

/** MessageChannelMain's main end: messages arrive as { data }. */
class FakeMainPort extends EventEmitter implements EnginePort {
  readonly posted: unknown[] = [];
  started = false;
  closed = false;
  postMessage(message: unknown): void {
    this.posted.push(message);
  }
  start(): void {
    this.started = true;
  }
  close(): void {
    this.closed = true;
  }
  /** A message from the worker. */
  deliver(data: unknown): void {
    this.emit('message', { data });
  }
}

class FakeContents extends EventEmitter implements EngineContents<FakeMainPort> {
  readonly id = 41;
  readonly sent: { channel: string; message: unknown; transfer: FakeMainPort[] }[] = [];
  postMessage(channel: string, message: unknown, transfer: FakeMainPort[]): void {
    this.sent.push({ channel, message, transfer });
  }
  getOSProcessId(): number {
    return 5150;
  }
}

class FakeEngineWindow extends EventEmitter implements EngineWindow<FakeMainPort> {
  readonly webContents = new FakeContents();
  readonly loaded: string[] = [];
  destroyed = 0;
  loadResult: Promise<void> = Promise.resolve();
  loadURL(url: string): Promise<void> {
    this.loaded.push(url);
    return this.loadResult;
  }
  destroy(): void {
    this.destroyed++;
    // Electron: the renderer goes, then the window's 'closed'
    this.webContents.emit('render-process-gone', {}, { reason: 'killed', exitCode: 9 });
    this.emit('closed');
  }
  isDestroyed(): boolean {
    return this.destroyed > 0;
  }
  /** The page loaded: the preload listens now. */
  finishLoad(): void {
    this.webContents.emit('did-finish-load');
  }
}

const FACTS: RouteFacts = { isInstalled: () => false, webgpuStatus: () => 'enabled' };

function setup(readyTimeoutMs?: number) {
  const windows: FakeEngineWindow[] = [];
  const channels: { port1: FakeMainPort; port2: FakeMainPort }[] = [];
  const log = new MemoryLog();
  const launcher = engineWindowLauncher(
    {
      createWindow: () => {
        const w = new FakeEngineWindow();
        windows.push(w);
        return w;
      },
      createChannel: () => {
        const c = { port1: new FakeMainPort(), port2: new FakeMainPort() };
        channels.push(c);
        return c;
      },
      engineEntry: '/app.asar/dist/main/engine.cjs',
      log,
      ...(readyTimeoutMs !== undefined ? { readyTimeoutMs } : {}),
    },
    FACTS,
  );
  const launch = (env: Record<string, string | undefined> = {}) => {
    const transport = launcher.launch(env);
    const window = windows.at(-1);
    const ports = channels.at(-1);
    assert.ok(window && ports);
    return { transport, window, port: ports.port1, workerPort: ports.port2 };
  };
  return { launcher, launch, windows, log };
}

const step = (seq: number): WorkerEvent => ({
  seq,
  type: 'step',
  record: { step: seq + 1, loss: 1, lr: 0.1, epoch: 0, img_per_s: 10 },
  order: new Int32Array([3, 1, 2, 0]),
});

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('engine window transport', () => {
  it('loads the engine page, sends init first (the env without unset variables), the port once the page loaded', () => {
    const { launch } = setup();
    const { transport, window, port, workerPort } = launch({ DIGPT_BACKEND: 'webgpu', UNSET: undefined });
    assert.equal(transport.kind, 'window');
    assert.deepEqual(window.loaded, [ENGINE_URL]);
    assert.ok(port.started);
    assert.deepEqual(port.posted, [
      { digptEngine: 'init', entry: '/app.asar/dist/main/engine.cjs', env: { DIGPT_BACKEND: 'webgpu' } },
    ]);
    assert.equal(transport.pid, undefined);
    assert.deepEqual(window.webContents.sent, []);
    window.finishLoad();
    assert.deepEqual(window.webContents.sent, [
      { channel: ENGINE_PORT_CHANNEL, message: null, transfer: [workerPort] },
    ]);
    // the renderer's pid: a run's lock names the worker's process.pid, which is the renderer's
    assert.equal(transport.pid, 5150);
    window.finishLoad();
    assert.equal(window.webContents.sent.length, 1, 'the port is sent once');
    void transport.terminate();
  });

  it("holds the job's messages until the worker is ready, then sends them in order; events come back in order", async () => {
    const { launch } = setup();
    const { transport, window, port } = launch();
    const handle = new JobHandle(transport);
    assert.equal(handle.transportKind, 'window');
    handle.send({ type: 'start', job: { kind: 'resume', run: '/ws/runs/a' } });
    handle.pause();
    window.finishLoad();
    assert.equal(port.posted.length, 1, 'only init before ready');
    port.deliver({ digptEngine: 'ready' });
    handle.continue();
    assert.deepEqual(port.posted.slice(1), [
      { seq: 0, type: 'start', job: { kind: 'resume', run: '/ws/runs/a' } },
      { seq: 1, type: 'pause' },
      { seq: 2, type: 'continue' },
    ] satisfies HostMessage[]);

    const events: WorkerEvent[] = [];
    handle.on('event', (e) => events.push(e));
    port.deliver(step(0));
    port.deliver(step(1));
    port.deliver({ seq: 2, type: 'done', dir: '/ws/runs/a', step: 2, stopped: false });
    port.deliver({ digptEngine: 'exit', code: 0 });
    assert.deepEqual(await handle.done(), { ok: true });
    assert.deepEqual(
      events.map((e) => e.seq),
      [0, 1, 2],
    );
    assert.deepEqual(
      (events[0] as Extract<WorkerEvent, { type: 'step' }>).order,
      new Int32Array([3, 1, 2, 0]),
    );
    // the job is over: its window is destroyed (once), its port closed, nothing more is posted or heard
    assert.equal(window.destroyed, 1);
    assert.ok(port.closed);
    handle.stop();
    port.deliver(step(3));
    assert.equal(port.posted.length, 4);
    assert.equal(events.length, 3);
  });

  it('terminate before ready destroys the window and reports the exit once (as killed)', async () => {
    const { launch } = setup();
    const { transport, window, port } = launch();
    const exits: unknown[] = [];
    const crashes: Error[] = [];
    transport.on('exit', (e) => exits.push(e));
    transport.on('crash', (e) => crashes.push(e));
    const handle = new JobHandle(transport);
    handle.send({ type: 'start', job: { kind: 'resume', run: '/ws/runs/a' } });
    await handle.kill();
    assert.equal(window.destroyed, 1);
    // the renderer's end and the window's 'closed' that the destroy caused are not a second exit or a crash
    assert.deepEqual(exits, [{ code: null, signal: 'SIGKILL' }]);
    assert.deepEqual(crashes, []);
    assert.deepEqual(await handle.done(), { ok: false, error: 'engine window was killed by SIGKILL' });
    // the held 'start' never left; a late 'ready' sends nothing
    port.deliver({ digptEngine: 'ready' });
    assert.deepEqual(port.posted.length, 1);
    await transport.terminate();
    assert.equal(window.destroyed, 1);
  });

  it('a crashed renderer fails its job with an error event and the exit; the host goes on with the next job', async () => {
    const { launch, log } = setup();
    const first = launch();
    const handle = new JobHandle(first.transport);
    const events: WorkerEvent[] = [];
    handle.on('event', (e) => events.push(e));
    first.window.finishLoad();
    first.port.deliver({ digptEngine: 'ready' });
    first.port.deliver(step(0));
    first.window.webContents.emit('render-process-gone', {}, { reason: 'crashed', exitCode: 139 });
    const error = "engine worker crashed: the engine window's renderer is gone (crashed, exit code 139)";
    assert.deepEqual(await handle.done(), { ok: false, error });
    assert.deepEqual(
      events.map((e) => [e.type, e.type === 'error' ? e.message : '']),
      [
        ['step', ''],
        ['error', error],
      ],
    );
    assert.equal(first.window.destroyed, 1);
    assert.match(log.lines.join('\n'), /renderer gone \(crashed, exit code 139\)/);

    const second = launch();
    assert.notEqual(second.window, first.window);
    const next = new JobHandle(second.transport);
    second.window.finishLoad();
    second.port.deliver({ digptEngine: 'ready' });
    second.port.deliver({ digptEngine: 'exit', code: 0 });
    assert.deepEqual(await next.done(), { ok: true });
  });

  const failures: [string, (w: FakeEngineWindow, port: FakeMainPort) => void, RegExp][] = [
    [
      'the page does not load',
      (w) => w.webContents.emit('did-fail-load', {}, -6, 'ERR_FILE_NOT_FOUND', ENGINE_URL, true),
      /could not load app:\/\/engine\/index\.html: ERR_FILE_NOT_FOUND \(-6\)/,
    ],
    [
      "the worker's script does not load (the page's title says so)",
      (w) => w.webContents.emit('page-title-updated', {}, `${ENGINE_ERROR_TITLE}boom`),
      /^engine worker crashed: boom$/,
    ],
    [
      'the worker has an uncaught error',
      (_w, port) => port.deliver({ digptEngine: 'crash', name: 'TypeError', message: 'x is not a function' }),
      /^engine worker crashed: x is not a function$/,
    ],
    ['the window is closed', (w) => w.emit('closed'), /the engine window was closed/],
  ];
  for (const [what, act, message] of failures) {
    it(`fails its job once when ${what}`, async () => {
      const { launch } = setup();
      const { transport, window, port } = launch();
      const exits: unknown[] = [];
      transport.on('exit', (e) => exits.push(e));
      const handle = new JobHandle(transport);
      window.finishLoad();
      act(window, port);
      act(window, port);
      const r = await handle.done();
      assert.equal(r.ok, false);
      assert.match(r.error ?? '', message);
      assert.deepEqual(exits, [{ code: 1, signal: null }]);
      assert.ok(window.destroyed >= 1);
    });
  }

  it("ignores a sub-frame's failed load and the page's ordinary title", () => {
    const { launch } = setup();
    const { transport, window } = launch();
    const exits: unknown[] = [];
    transport.on('exit', (e) => exits.push(e));
    window.webContents.emit('did-fail-load', {}, -3, 'ERR_ABORTED', 'app://engine/x', false);
    window.webContents.emit('page-title-updated', {}, 'D-iGPT engine');
    assert.deepEqual(exits, []);
    void transport.terminate();
  });

  it('a rejected loadURL fails the job once (did-fail-load reports the same)', async () => {
    const { launch } = setup();
    const windowLoad = Promise.reject(new Error('ERR_FAILED (-2) loading app://engine/index.html'));
    windowLoad.catch(() => undefined);
    const original = FakeEngineWindow.prototype.loadURL;
    FakeEngineWindow.prototype.loadURL = function (url: string) {
      this.loaded.push(url);
      return windowLoad;
    };
    try {
      const { transport, window } = launch();
      const handle = new JobHandle(transport);
      window.webContents.emit('did-fail-load', {}, -2, 'ERR_FAILED', ENGINE_URL, true);
      const r = await handle.done();
      assert.match(r.error ?? '', /ERR_FAILED \(-2\)/);
      await tick();
      assert.equal(window.destroyed, 1);
    } finally {
      FakeEngineWindow.prototype.loadURL = original;
    }
  });

  it('fails a worker that never says ready', async () => {
    const { launch } = setup(20);
    const { transport, window } = launch();
    const handle = new JobHandle(transport);
    window.finishLoad();
    const r = await handle.done();
    assert.match(r.error ?? '', /did not start within 0\.02 s/);
  });

  it("fails when the worker's end of the channel closes, giving the renderer's own report a moment to come first", async () => {
    const { launch } = setup();
    const { transport, window, port } = launch();
    const handle = new JobHandle(transport);
    window.finishLoad();
    port.deliver({ digptEngine: 'ready' });
    port.emit('close');
    const r = await handle.done();
    assert.match(r.error ?? '', /closed its channel/);
  });
});

describe('engine window route', () => {
  const env = (e: Record<string, string>) => e;
  it('DIGPT_BACKEND=webgpu goes there; DIGPT_JOB_PROCESS=1 and other backends do not', () => {
    assert.equal(engineWindowRoute(env({ DIGPT_BACKEND: 'webgpu' }), FACTS).ok, true);
    const off: RouteFacts = { isInstalled: () => true, webgpuStatus: () => 'disabled_software' };
    assert.equal(engineWindowRoute(env({ DIGPT_BACKEND: 'webgpu' }), off).ok, true, 'forced is forced');
    assert.equal(
      engineWindowRoute(env({ DIGPT_BACKEND: 'webgpu', DIGPT_JOB_PROCESS: '1' }), FACTS).ok,
      false,
    );
    for (const b of ['wasm', 'cpu', 'tensorflow', 'tensorflow-gpu'])
      assert.equal(engineWindowRoute(env({ DIGPT_BACKEND: b }), FACTS).ok, false, b);
  });

  it("unset: there when tensorflow-gpu cannot run and Chromium's WebGPU is hardware-accelerated", () => {
    const facts = (gpuPkg: boolean, status: string | undefined): RouteFacts => ({
      isInstalled: (pkg) => gpuPkg && pkg === '@tensorflow/tfjs-node-gpu',
      webgpuStatus: () => status,
    });
    assert.deepEqual(engineWindowRoute({}, facts(false, 'enabled')), {
      ok: true,
      why: "webgpu (Chromium's WebGPU is enabled)",
    });
    assert.equal(engineWindowRoute({}, facts(true, 'enabled')).ok, false, 'tensorflow-gpu first');
    assert.equal(engineWindowRoute({ CUDA_VISIBLE_DEVICES: '-1' }, facts(true, 'enabled')).ok, true);
    assert.equal(
      engineWindowRoute({}, facts(true, 'enabled'), true).ok,
      true,
      'an earlier job found no CUDA 11.2',
    );
    for (const status of ['disabled_software', 'disabled_off', 'unavailable_software', undefined])
      assert.equal(engineWindowRoute({}, facts(false, status)).ok, false, String(status));
  });

  it("learns from a job's backend report that tensorflow-gpu cannot run here", () => {
    const { launcher } = setup();
    const facts = { isInstalled: () => true, webgpuStatus: () => 'enabled' };
    const l = engineWindowLauncher(
      {
        createWindow: () => new FakeEngineWindow(),
        createChannel: () => ({ port1: new FakeMainPort(), port2: new FakeMainPort() }),
        engineEntry: '',
      },
      facts,
    );
    assert.equal(l.accepts({}), false);
    l.noteBackend({
      skipped: [{ name: 'tensorflow-gpu', reason: '@tensorflow/tfjs-node-gpu: not installed' }],
    });
    assert.equal(l.accepts({}), false);
    l.noteBackend({
      skipped: [
        {
          name: 'tensorflow-gpu',
          reason: 'tensorflow-gpu: loaded, but no GPU device (needs CUDA 11.2 and cuDNN 8.1)',
        },
      ],
    });
    assert.equal(l.accepts({}), true);
    assert.equal(launcher.accepts({}), true);
    assert.equal(
      tensorflowGpuSkipped({
        skipped: [
          { name: 'tensorflow-gpu', reason: "tensorflow-gpu: CUDA_VISIBLE_DEVICES='-1' hides every GPU" },
        ],
      }),
      false,
    );
    assert.equal(
      tensorflowGpuSkipped({
        skipped: [
          {
            name: 'tensorflow-gpu',
            reason: '@tensorflow/tfjs-node-gpu: installed but does not load (libcudart.so.11.0)',
          },
        ],
      }),
      true,
    );
  });

  it('watchBackends hands each backend report of a launched transport to note, and passes everything on', () => {
    const fake = new FakeTransport();
    const notes: unknown[] = [];
    const launch = watchBackends(
      (_env: Record<string, string | undefined>, _argv: string[]) => fake,
      (b) => notes.push(b),
    );
    assert.equal(launch({}, []), fake);
    const backend = {
      name: 'tensorflow' as const,
      tfName: 'tensorflow',
      skipped: [],
      forced: false,
      text: 'tensorflow',
    };
    fake.emit('message', { seq: 0, type: 'backend', backend });
    fake.emit('message', step(1));
    assert.deepEqual(notes, [backend]);
  });
});

class FakeTransport extends EventEmitter<TransportEvents> implements Transport {
  readonly kind = 'window';
  readonly pid = undefined;
  readonly posted: HostMessage[] = [];
  post(m: HostMessage): void {
    this.posted.push(m);
  }
  async terminate(): Promise<void> {}
}

describe('the job host with a GPU launcher', () => {
  afterEach(() => setGpuLauncher(null));

  it('startJob gives a job it accepts to it, with the environment, and sends start', () => {
    const transport = new FakeTransport();
    const posted = transport.posted;
    const asked: unknown[] = [];
    setGpuLauncher({
      accepts: (env) => (asked.push(env), true),
      launch: () => transport,
    });
    const env = { DIGPT_BACKEND: 'webgpu' };
    const handle = startJob({ kind: 'resume', run: '/ws/runs/a' }, env);
    assert.deepEqual(asked, [env]);
    assert.equal(handle.transportKind, 'window');
    assert.deepEqual(posted, [{ seq: 0, type: 'start', job: { kind: 'resume', run: '/ws/runs/a' } }]);
    transport.emit('exit', { code: 2, signal: null });
    return handle
      .done()
      .then((r) => assert.deepEqual(r, { ok: false, error: 'engine window exited with code 2' }));
  });
});

/** The DOM MessagePort the worker gets: listeners by addEventListener, messages as { data }. */
class FakeWorkerPort implements WorkerPort {
  readonly posted: unknown[] = [];
  private readonly listeners = new Set<(e: { data: unknown }) => void>();
  started = false;
  addEventListener(_type: 'message', l: (e: { data: unknown }) => void): void {
    this.listeners.add(l);
  }
  removeEventListener(_type: 'message', l: (e: { data: unknown }) => void): void {
    this.listeners.delete(l);
  }
  postMessage(message: unknown): void {
    this.posted.push(message);
  }
  start(): void {
    this.started = true;
  }
  deliver(data: unknown): void {
    for (const l of [...this.listeners]) l({ data });
  }
}

class FakeScope implements WorkerScope {
  private readonly target = new EventEmitter();
  closed = 0;
  addEventListener(type: string, listener: (event: never) => void): void {
    this.target.on(type, listener as (event: unknown) => void);
  }
  removeEventListener(type: string, listener: (event: never) => void): void {
    this.target.off(type, listener as (event: unknown) => void);
  }
  close(): void {
    this.closed++;
  }
  dispatch(type: string, event: object): void {
    this.target.emit(type, event);
  }
}

type FakeProcess = EventEmitter & WorkerProcess;

function workerSetup(load: (entry: string, proc: FakeProcess) => void = () => undefined) {
  const scope = new FakeScope();
  const port = new FakeWorkerPort();
  const proc = Object.assign(new EventEmitter(), {
    env: { HOME: '/home/u', DIGPT_BACKEND: 'wasm' } as Record<string, string | undefined>,
    exit: (() => {
      throw new Error('the real exit');
    }) as (code?: number | string | null) => never,
  }) as FakeProcess;
  const loaded: string[] = [];
  startEngineWorker(scope, proc, (entry) => {
    loaded.push(entry);
    load(entry, proc);
  });
  return { scope, port, proc, loaded };
}

describe('engine worker side', () => {
  it('takes the port from the page, reads init, loads the engine with a channel in place, then says ready', async () => {
    const seenAtLoad: unknown[] = [];
    const { scope, port, proc, loaded } = workerSetup((_entry, p) => {
      // the engine's processLink binds process.send as it loads
      seenAtLoad.push(typeof p.send, p.env['DIGPT_BACKEND'], p.env['HOME']);
      p.on('message', (m) => p.send?.({ echo: m } as never));
    });
    scope.dispatch('message', { data: 'something else', ports: [port] });
    assert.equal(port.started, false);
    scope.dispatch('message', { data: ENGINE_PORT_CHANNEL, ports: [port] });
    assert.ok(port.started);
    port.deliver({ seq: 0, type: 'start' });
    assert.deepEqual(loaded, [], 'nothing before init');
    port.deliver({ digptEngine: 'init', entry: '/x/engine.cjs', env: { DIGPT_BACKEND: 'webgpu' } });
    assert.deepEqual(loaded, ['/x/engine.cjs']);
    assert.deepEqual(seenAtLoad, ['function', 'webgpu', undefined]);
    assert.deepEqual(proc.env, { DIGPT_BACKEND: 'webgpu' });
    assert.deepEqual(port.posted, [{ digptEngine: 'ready' }]);
    port.deliver({ seq: 1, type: 'stop' });
    assert.deepEqual(port.posted.at(-1), { echo: { seq: 1, type: 'stop' } });
    // a second port is not taken
    const other = new FakeWorkerPort();
    scope.dispatch('message', { data: ENGINE_PORT_CHANNEL, ports: [other] });
    assert.equal(other.started, false);
    await tick();
  });

  it('process.exit becomes one `exit` on the port and closes the worker', () => {
    const { scope, port, proc } = workerSetup();
    scope.dispatch('message', { data: ENGINE_PORT_CHANNEL, ports: [port] });
    port.deliver({ digptEngine: 'init', entry: '/x/engine.cjs', env: {} });
    proc.exit(0);
    proc.exit(1);
    assert.deepEqual(port.posted, [{ digptEngine: 'ready' }, { digptEngine: 'exit', code: 0 }]);
    assert.equal(scope.closed, 1);
  });

  it('an engine that does not load is an error event and exit 1, never ready', () => {
    const { scope, port } = workerSetup(() => {
      throw new Error("Cannot find module '@tensorflow/tfjs-core'");
    });
    scope.dispatch('message', { data: ENGINE_PORT_CHANNEL, ports: [port] });
    port.deliver({ digptEngine: 'init', entry: '/x/engine.cjs', env: {} });
    assert.deepEqual(port.posted, [
      {
        seq: -1,
        type: 'error',
        name: 'Error',
        message: "engine worker crashed: Cannot find module '@tensorflow/tfjs-core'",
      },
      { digptEngine: 'exit', code: 1 },
    ]);
    assert.equal(scope.closed, 1);
  });

  it('uncaught errors and rejections are `crash` on the port', () => {
    const { scope, port } = workerSetup();
    scope.dispatch('message', { data: ENGINE_PORT_CHANNEL, ports: [port] });
    let prevented = 0;
    const preventDefault = () => prevented++;
    scope.dispatch('error', {
      message: 'x is not a function',
      error: new TypeError('x is not a function'),
      preventDefault,
    });
    scope.dispatch('unhandledrejection', { reason: 'lost device', preventDefault });
    assert.deepEqual(port.posted, [
      { digptEngine: 'crash', name: 'TypeError', message: 'x is not a function' },
      { digptEngine: 'crash', name: 'Error', message: 'lost device' },
    ]);
    assert.equal(prevented, 2);
  });

  it("dresses Blink's timer ids as Node's Timeout (unref), and leaves Node's timers alone", async () => {
    assert.equal(
      nodeStyleTimers({ setTimeout, clearTimeout: (t) => clearTimeout(t as NodeJS.Timeout) }),
      null,
    );
    let next = 1;
    const pending = new Map<number, () => void>();
    const blink = {
      setTimeout: (cb: () => void) => (pending.set(next, cb), next++),
      clearTimeout: (id: unknown) => pending.delete(id as number),
    };
    const timers = nodeStyleTimers(blink);
    assert.ok(timers);
    let fired = 0;
    const t = timers.setTimeout(() => fired++, 2000) as {
      unref(): unknown;
      ref(): unknown;
      hasRef(): boolean;
    };
    assert.equal(t.unref(), t);
    assert.equal(t.hasRef(), true);
    const u = timers.setTimeout(() => fired++, 10);
    timers.clearTimeout(u);
    for (const cb of pending.values()) cb();
    assert.equal(fired, 1);
  });
});

describe('engine page', () => {
  const handler = createEnginePageHandler(
    '/app/dist/main/engine-worker.js',
    async (f) => `// worker from ${f}`,
  );
  const get = (url: string, method = 'GET') => handler({ url, method });

  it('serves the page, its script and the worker script, each with a CSP, from app://engine/ only', async () => {
    const page = await get(ENGINE_URL);
    assert.equal(page.status, 200);
    assert.equal(page.headers.get('Content-Security-Policy'), ENGINE_CONTENT_SECURITY_POLICY);
    assert.equal(page.headers.get('X-Content-Type-Options'), 'nosniff');
    const html = await page.text();
    assert.match(html, /<script src="page\.js"><\/script>/);
    assert.doesNotMatch(html, /<script>/, 'no inline script');
    assert.equal(await (await get('app://engine/page.js')).text(), ENGINE_PAGE_SCRIPT);
    const worker = await get('app://engine/engine-worker.js');
    assert.equal(await worker.text(), '// worker from /app/dist/main/engine-worker.js');
    assert.match(
      worker.headers.get('Content-Security-Policy') ?? '',
      /default-src 'none'; script-src 'self'/,
    );
    for (const url of [
      'app://engine/engine.cjs',
      'app://engine/../index.js',
      'app://workbench/index.html',
      APP_URL,
    ])
      assert.equal((await get(url)).status, 404, url);
    assert.equal((await get(ENGINE_URL, 'POST')).status, 405);
    assert.equal(await (await get(ENGINE_URL, 'HEAD')).text(), '');
  });

  it("the page's CSP allows its own script and worker and nothing else", () => {
    assert.match(ENGINE_CONTENT_SECURITY_POLICY, /default-src 'none'/);
    assert.match(ENGINE_CONTENT_SECURITY_POLICY, /script-src 'self'/);
    assert.match(ENGINE_CONTENT_SECURITY_POLICY, /worker-src 'self'/);
    assert.doesNotMatch(ENGINE_CONTENT_SECURITY_POLICY, /unsafe/);
    assert.ok(ENGINE_URL.startsWith(`${APP_SCHEME}://`));
  });

  it("the page's script takes only its own window's port message, starts one worker and hands it the port", () => {
    const listeners: ((e: unknown) => void)[] = [];
    const workers: {
      url: string;
      name: string;
      posted: unknown[][];
      onerror?: (e: { message: string }) => void;
    }[] = [];
    const document = { title: 'D-iGPT engine' };
    const window: Record<string, unknown> = {
      addEventListener: (type: string, l: (e: unknown) => void) => type === 'message' && listeners.push(l),
    };
    class Worker {
      readonly posted: unknown[][] = [];
      onerror?: (e: { message: string }) => void;
      constructor(
        readonly url: string,
        readonly options: { name: string },
      ) {
        workers.push({ url, name: options.name, posted: this.posted, onerror: undefined });
      }
      addEventListener(type: string, l: (e: { message: string }) => void): void {
        const w = workers.at(-1);
        if (type === 'error' && w) w.onerror = l;
      }
      postMessage(m: unknown, transfer: unknown[]): void {
        this.posted.push([m, transfer]);
      }
    }
    runInNewContext(ENGINE_PAGE_SCRIPT, { window, Worker, document });
    const port = { port: 1 };
    const send = (e: unknown) => listeners.forEach((l) => l(e));
    send({ source: {}, data: ENGINE_PORT_CHANNEL, ports: [port] });
    send({ source: window, data: 'other', ports: [port] });
    send({ source: window, data: ENGINE_PORT_CHANNEL, ports: [] });
    assert.equal(workers.length, 0);
    send({ source: window, data: ENGINE_PORT_CHANNEL, ports: [port] });
    send({ source: window, data: ENGINE_PORT_CHANNEL, ports: [port] });
    assert.equal(workers.length, 1);
    assert.equal(workers[0]?.url, 'engine-worker.js');
    const [message, transfer] = workers[0]?.posted[0] ?? [];
    assert.equal(workers[0]?.posted.length, 1);
    assert.equal(message, ENGINE_PORT_CHANNEL);
    assert.ok(Array.isArray(transfer) && transfer.length === 1 && transfer[0] === port);
    workers[0]?.onerror?.({ message: '' });
    assert.equal(document.title, `${ENGINE_ERROR_TITLE}its script did not load`);
  });
});

describe('engine window policies', () => {
  it('webPreferences: context-isolated page without Node, Node only in its worker, its own session', () => {
    const prefs = engineWebPreferences('/app/dist/main/engine-preload.cjs', ENGINE_PARTITION);
    assert.deepEqual(prefs, {
      preload: '/app/dist/main/engine-preload.cjs',
      partition: 'digpt-engine',
      contextIsolation: true,
      // nodeIntegrationInWorker requires an unsandboxed renderer
      sandbox: false,
      nodeIntegration: false,
      nodeIntegrationInSubFrames: false,
      nodeIntegrationInWorker: true,
      webSecurity: true,
      allowRunningInsecureContent: false,
      webviewTag: false,
      spellcheck: false,
      backgroundThrottling: false,
    });
    // the UI window's stay as they were: sandboxed, no Node anywhere
    const ui = secureWebPreferences('/p.cjs');
    assert.equal(ui.sandbox, true);
    assert.equal(ui.nodeIntegrationInWorker, false);
  });

  it('the engine window navigates nowhere but its page and opens no window', () => {
    assert.equal(isNavigationAllowed(`${ENGINE_URL}#x`, ENGINE_URL), true);
    for (const url of [APP_URL, 'https://evil.example/', 'file:///tmp/x.html', 'app://engine/other.html'])
      assert.equal(isNavigationAllowed(url, ENGINE_URL), false, url);
    assert.deepEqual(windowOpenPolicy(), { action: 'deny' });
  });

  it("the UI's IPC router refuses the engine window's webContents", async () => {
    const UI_ID = 7;
    const ENGINE_ID = new FakeContents().id;
    const workbench = new FakeWorkbench();
    const log = new MemoryLog();
    const router = createIpcRouter({
      workbench,
      dialogs: new FakeDialogs(),
      isTrustedSender: createSenderCheck(() => UI_ID, APP_URL),
      log,
    });
    for (const frameUrl of [ENGINE_URL, APP_URL, undefined]) {
      const r = await router(Channels.request, { senderId: ENGINE_ID, frameUrl }, ['app.info', {}]);
      assert.deepEqual(r, { ok: false, error: UNKNOWN_SENDER });
    }
    // nor does its page pass in the UI window's place
    assert.deepEqual(await router(Channels.openFolder, { senderId: UI_ID, frameUrl: ENGINE_URL }, []), {
      ok: false,
      error: UNKNOWN_SENDER,
    });
    assert.deepEqual(workbench.calls, []);
    assert.equal(log.lines.length, 4);
  });
});
