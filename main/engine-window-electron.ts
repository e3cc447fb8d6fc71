// The engine window's Electron side (kept thin; the logic is main/engine-window.ts): its session, which serves only
// the engine page (app://engine/), and the hidden window itself, with the policies of main/security.ts applied.
import { app, BrowserWindow, MessageChannelMain, session } from 'electron';
import { createRequire } from 'node:module';
import { APP_SCHEME } from './app-protocol.js';
import {
  createEnginePageHandler,
  engineWindowLauncher,
  ENGINE_PARTITION,
  ENGINE_URL,
  type EngineWindowLauncher,
} from './engine-window.js';
import { engineWebPreferences, isNavigationAllowed, windowOpenPolicy } from './security.js';

export interface EngineFiles {
  /** dist/main/engine-preload.cjs */
  preload: string;
  /** dist/main/engine-worker.js, served as app://engine/engine-worker.js */
  workerScript: string;
  /** dist/main/engine.cjs, which the worker requires */
  engineEntry: string;
}

const require = createRequire(import.meta.url);

function createEngineWindow(preload: string): BrowserWindow {
  const window = new BrowserWindow({
    show: false,
    title: 'D-iGPT engine',
    webPreferences: engineWebPreferences(preload, ENGINE_PARTITION),
  });
  const contents = window.webContents;
  const guard = (event: { preventDefault(): void }, url: string) => {
    if (!isNavigationAllowed(url, ENGINE_URL)) {
      event.preventDefault();
      console.warn(`engine window: blocked navigation to ${url}`);
    }
  };
  contents.on('will-navigate', (event) => guard(event, event.url));
  contents.on('will-redirect', (event) => guard(event, event.url));
  contents.on('will-frame-navigate', (event) => guard(event, event.url));
  contents.setWindowOpenHandler(windowOpenPolicy);
  contents.on('will-attach-webview', (event) => event.preventDefault());
  return window;
}

/** The job host's GPU launcher (setGpuLauncher) for the desktop app; call once the app is ready. */
export function createEngineLauncher(files: EngineFiles): EngineWindowLauncher {
  const engineSession = session.fromPartition(ENGINE_PARTITION);
  engineSession.protocol.handle(APP_SCHEME, createEnginePageHandler(files.workerScript));
  // WebGPU asks for no permission; the engine page needs none
  engineSession.setPermissionRequestHandler((_contents, _permission, callback) => callback(false));
  engineSession.setPermissionCheckHandler(() => false);
  return engineWindowLauncher(
    {
      createWindow: () => createEngineWindow(files.preload),
      createChannel: () => new MessageChannelMain(),
      engineEntry: files.engineEntry,
    },
    {
      isInstalled: (pkg) => {
        try {
          require.resolve(pkg);
          return true;
        } catch {
          return false;
        }
      },
      // Chromium reports 'webgpu' beside the features Electron's type lists
      webgpuStatus: () =>
        (app.getGPUFeatureStatus() as unknown as Record<string, string | undefined>)['webgpu'],
    },
  );
}
