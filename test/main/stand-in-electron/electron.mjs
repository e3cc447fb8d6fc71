// A stand-in for the `electron` module, so the bundled main process (dist/main/index.js) runs under plain Node in
// test/main/main-bundle.test.ts: it records what main asks of Electron, serves the window's page through the app://
// handler main registered, sends IPC through the handlers main registered, and runs utility processes as forked
// Node children whose process.parentPort is laid over their IPC channel (parent-port.mjs). Each observation is sent
// to the test over this process's own IPC channel as { type, ... }.
import { fork } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { createRequire } from 'node:module';

const report = (message) => process.send?.(message);
const started = performance.now();
let ready = false;
const ipcHandlers = new Map();
const protocolHandlers = new Map();
const windows = [];

export const protocol = {
  registerSchemesAsPrivileged(schemes) {
    report({ type: 'schemes', schemes, beforeReady: !ready });
  },
};

class StandInSession {
  constructor(handlers = protocolHandlers) {
    this.protocol = { handle: (scheme, handler) => handlers.set(scheme, handler) };
  }
  webRequest = { onHeadersReceived: () => undefined };
  setPermissionRequestHandler() {}
  setPermissionCheckHandler() {}
}
export const session = {
  defaultSession: new StandInSession(),
  // the engine window's own session (main/engine-window-electron.ts): its handlers are not the UI's
  fromPartition: (partition) => {
    report({ type: 'partition', partition });
    return new StandInSession(new Map());
  },
};

/** Only a webgpu job would open a channel to an engine window; the scenario runs none. */
export class MessageChannelMain {
  constructor() {
    throw new Error('stand-in electron: no engine window here');
  }
}

export const ipcMain = {
  handle: (channel, handler) => ipcHandlers.set(channel, handler),
};

class StandInApp extends EventEmitter {
  name = 'D-iGPT Workbench';
  isPackaged = true;
  requestSingleInstanceLock() {
    return true;
  }
  whenReady() {
    ready = true;
    return Promise.resolve();
  }
  getPath() {
    return process.env.DIGPT_WORKSPACE ?? '/tmp';
  }
  quit() {
    // main prevents the first quit (it stops jobs first), then quits again once the workbench is closed
    const event = { defaultPrevented: false, preventDefault: () => (event.defaultPrevented = true) };
    this.emit('before-quit', event);
    if (!event.defaultPrevented) report({ type: 'quit' }, () => process.exit(0));
  }
  exit(code) {
    process.exit(code);
  }
  getGPUFeatureStatus() {
    return { webgpu: 'disabled_software' };
  }
}
export const app = new StandInApp();

let nextContentsId = 1;
class WebContents extends EventEmitter {
  id = nextContentsId++;
  sent = [];
  send(channel, message) {
    this.sent.push({ channel, message });
    this.emit('sent', { channel, message });
  }
  setWindowOpenHandler() {}
}

export class BrowserWindow extends EventEmitter {
  webContents = new WebContents();
  constructor(options) {
    super();
    report({ type: 'window', webPreferences: options.webPreferences });
    windows.push(this);
  }
  isDestroyed() {
    return false;
  }
  isMinimized() {
    return false;
  }
  show() {}
  async loadURL(url) {
    const handler = protocolHandlers.get(new URL(url).protocol.slice(0, -1));
    const response = handler ? await handler(new Request(url)) : null;
    report({
      type: 'page',
      url,
      status: response?.status ?? null,
      contentType: response?.headers.get('content-type') ?? null,
      csp: response?.headers.get('content-security-policy') ?? null,
      msToPage: performance.now() - started,
      rss: process.memoryUsage().rss,
    });
    setImmediate(() => void scenario(this, url));
  }
}

/** What the window would do next: IPC as the page and as a stranger, then a process job, then quit. */
async function scenario(window, pageUrl) {
  const invoke = (frameUrl, ...args) =>
    ipcHandlers.get('digpt:request')(
      { sender: { id: window.webContents.id }, senderFrame: { url: frameUrl } },
      ...args,
    );
  report({ type: 'info', result: await invoke(`${pageUrl}#/runs`, 'app.info', {}) });
  report({ type: 'stranger', result: await invoke('file:///tmp/dropped.html', 'app.info', {}) });
  const tfjs = Object.keys(createRequire(import.meta.url).cache).filter((p) => p.includes('@tensorflow'));
  report({ type: 'modules', tfjs });

  const launched = await invoke(pageUrl, 'runs.launch', {
    kind: 'pretrain',
    dataset: 'builtin-sample',
    preset: 'digpt-micro-32',
    teacher: 'pixels',
    objective: 'digpt',
    steps: 2,
    batch: 4,
    accum: 1,
    blr: 1e-3,
    seed: 0,
    workers: 1,
  });
  report({ type: 'launched', result: launched });
  if (launched.ok) {
    await new Promise((resolve) => {
      const onSent = ({ message }) => {
        if (message.name !== 'run.update' || message.payload.id !== launched.value.id) return;
        if (['done', 'failed', 'stopped'].includes(message.payload.status)) {
          report({ type: 'run', summary: message.payload });
          window.webContents.off('sent', onSent);
          resolve();
        }
      };
      window.webContents.on('sent', onSent);
    });
  }
  const events = window.webContents.sent.map((s) => s.message.name);
  report({ type: 'events', names: [...new Set(events)] });
  app.quit();
}

export const dialog = {
  showErrorBox: (title, text) => report({ type: 'error-box', title, text }),
  showOpenDialog: async () => ({ canceled: true, filePaths: [] }),
  showSaveDialog: async () => ({ canceled: true }),
};
export const shell = { openPath: async () => '' };
export const Menu = {
  buildFromTemplate: (template) => template,
  setApplicationMenu: () => undefined,
};

const parentPortShim = new URL('./parent-port.mjs', import.meta.url).href;

export const utilityProcess = {
  fork(modulePath, args, options) {
    report({ type: 'fork', modulePath, serviceName: options.serviceName, stdio: options.stdio });
    const child = fork(modulePath, args, {
      env: options.env,
      execArgv: [...options.execArgv, '--import', parentPortShim],
      serialization: 'advanced',
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    const utility = new EventEmitter();
    utility.pid = undefined;
    child.on('spawn', () => {
      utility.pid = child.pid;
      utility.emit('spawn');
    });
    child.on('message', (m) => utility.emit('message', m));
    child.on('exit', (code) => {
      utility.pid = undefined;
      utility.emit('exit', code ?? 1);
    });
    child.on('error', () => undefined);
    utility.postMessage = (m) => child.connected && child.send({ fromParent: m });
    utility.kill = () => child.kill('SIGTERM');
    return utility;
  },
};
