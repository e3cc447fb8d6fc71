// Electron main process: one sandboxed window over the workbench of app/workbench, wired by main/ipc.ts.
// The workbench (datasets, folder watching, runs in worker threads, on tensorflow in utility processes, on webgpu in
// hidden engine windows) runs here, in the main process. scripts/build-main.mjs bundles this file with the workbench
// into dist/main/index.js, beside the bundled job worker it starts, so the app runs no TypeScript and needs neither
// tsx nor esbuild.
import { app, BrowserWindow, dialog, ipcMain, protocol, session, shell, utilityProcess } from 'electron';
import { join } from 'node:path';
import { setGpuLauncher, setProcessLauncher } from '../app/jobs/host.js';
import { Workbench } from '../app/workbench/index.js';
import { defaultWorkspace } from '../app/workspace.js';
import { APP_SCHEME_PRIVILEGES, APP_URL } from './app-protocol.js';
import { INVOKE_CHANNELS } from './channels.js';
import { watchBackends } from './engine-window.js';
import { createEngineLauncher } from './engine-window-electron.js';
import { createEventForwarder, createIpcRouter, type Dialogs } from './ipc.js';
import { utilityProcessLauncher } from './job-process.js';
import { installMenu } from './menu.js';
import { createSenderCheck } from './security.js';
import { createMainWindow, secureSession, serveApp } from './window.js';

// dist/main/ -> the built page (served as app://workbench/), the bundled preload, the job process entry, the engine
// window's preload, worker script and engine.
const here = import.meta.dirname;
const rendererDir = join(here, '..', 'renderer');
const preloadPath = join(here, 'preload.cjs');
const jobProcessEntry = join(here, 'job-process.js');

// before the app is ready, or the scheme gets no origin of its own
protocol.registerSchemesAsPrivileged([APP_SCHEME_PRIVILEGES]);

function fatal(title: string, error: unknown): void {
  const text = error instanceof Error ? (error.stack ?? error.message) : String(error);
  console.error(`${title}: ${text}`);
  dialog.showErrorBox(title, text);
}

async function main(): Promise<void> {
  await app.whenReady();
  secureSession(session.defaultSession);
  serveApp(session.defaultSession, rendererDir);
  // webgpu jobs in hidden engine windows, on Chromium's WebGPU: dawn.node cannot run inside Electron
  const engine = createEngineLauncher({
    preload: join(here, 'engine-preload.cjs'),
    workerScript: join(here, 'engine-worker.js'),
    engineEntry: join(here, 'engine.cjs'),
  });
  setGpuLauncher(engine);
  // process jobs (tensorflow) in utility processes: the runAsNode fuse is off, so the binary cannot fork itself as
  // Node; one that finds tensorflow-gpu unusable (no CUDA 11.2) sends later GPU jobs to the engine window
  setProcessLauncher(
    watchBackends(utilityProcessLauncher(utilityProcess.fork, jobProcessEntry), (b) => engine.noteBackend(b)),
  );

  // the same default as `digpt` and `digpt serve` ($DIGPT_WORKSPACE honoured), so each shows the others' runs
  const workspace = defaultWorkspace();
  const workbench = new Workbench({ workspace });
  let window: BrowserWindow | null = null;
  const current = (): BrowserWindow | null => (window && !window.isDestroyed() ? window : null);

  const dialogs: Dialogs = {
    async openFolder() {
      const options = { title: 'Add a dataset folder', properties: ['openDirectory' as const] };
      const parent = current();
      const r = parent ? await dialog.showOpenDialog(parent, options) : await dialog.showOpenDialog(options);
      return r.canceled ? null : (r.filePaths[0] ?? null);
    },
    async saveExport(defaultName) {
      const options = { title: 'Export to', defaultPath: join(app.getPath('documents'), defaultName) };
      const parent = current();
      const r = parent ? await dialog.showSaveDialog(parent, options) : await dialog.showSaveDialog(options);
      return r.canceled ? null : (r.filePath ?? null);
    },
  };

  const router = createIpcRouter({
    workbench,
    dialogs,
    isTrustedSender: createSenderCheck(() => current()?.webContents.id ?? null, APP_URL),
  });
  for (const channel of INVOKE_CHANNELS) {
    ipcMain.handle(channel, (event, ...args: unknown[]) =>
      router(channel, { senderId: event.sender.id, frameUrl: event.senderFrame?.url }, args),
    );
  }
  workbench.on(createEventForwarder((channel, message) => current()?.webContents.send(channel, message)));

  const openWindow = () => {
    window = createMainWindow({
      preloadPath,
      appUrl: APP_URL,
      onLoadError: (e) => fatal('Cannot load the interface (was `npm run build:renderer` run?)', e),
    });
    // hidden engine windows count as windows: without the UI window the app quits all the same (its jobs stop)
    window.on('closed', () => {
      if (process.platform !== 'darwin') app.quit();
    });
  };
  installMenu({
    addDatasetFolder: () => {
      void (async () => {
        const path = await dialogs.openFolder();
        if (path === null) return;
        // The window hears the new dataset through the workbench's dataset.update event.
        const r = await workbench.handle('datasets.add', { path });
        if (!r.ok) dialog.showErrorBox('Cannot add the dataset', r.error);
      })();
    },
    openWorkspace: () => void shell.openPath(workspace),
  });
  openWindow();

  app.on('second-instance', () => {
    const w = current();
    if (w) {
      if (w.isMinimized()) w.restore();
      w.focus();
    }
  });
  app.on('activate', () => {
    if (!current()) openWindow();
  });
  app.on('window-all-closed', () => {
    if (process.platform !== 'darwin') app.quit();
  });

  // Stop running jobs (each writes a checkpoint) and the folder watchers before quitting; give up after 15 s.
  let closing = false;
  app.on('before-quit', (event) => {
    if (closing) return;
    closing = true;
    event.preventDefault();
    const timeout = new Promise<void>((resolve) => setTimeout(resolve, 15_000).unref());
    void Promise.race([workbench.close(), timeout])
      .catch((e: unknown) => console.error('workbench close failed:', e))
      .finally(() => app.quit());
  });
}

if (!app.requestSingleInstanceLock()) {
  app.quit();
} else {
  main().catch((e: unknown) => {
    fatal('D-iGPT Workbench could not start', e);
    app.exit(1);
  });
}
