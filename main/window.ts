// The app's window and its session, with the policies of main/security.ts applied (Electron-touching, kept thin).
import { BrowserWindow, type Session } from 'electron';
import { APP_SCHEME, createAppProtocolHandler } from './app-protocol.js';
import {
  isNavigationAllowed,
  isPermissionAllowed,
  secureWebPreferences,
  windowOpenPolicy,
  withCsp,
} from './security.js';

/** Sends our CSP with every response of `session` and refuses permissions the page does not need (camera...). */
export function secureSession(session: Session): void {
  session.webRequest.onHeadersReceived((details, callback) => {
    callback({ responseHeaders: withCsp(details.responseHeaders) });
  });
  session.setPermissionRequestHandler((_contents, permission, callback) =>
    callback(isPermissionAllowed(permission)),
  );
  session.setPermissionCheckHandler((_contents, permission) => isPermissionAllowed(permission));
}

/** Serves the built page `rendererDir` (dist/renderer/) as app://workbench/ in `session` (main/app-protocol.ts). */
export function serveApp(session: Session, rendererDir: string): void {
  session.protocol.handle(APP_SCHEME, createAppProtocolHandler(rendererDir));
}

export interface MainWindowOptions {
  /** dist/main/preload.cjs */
  preloadPath: string;
  /** app://workbench/index.html (main/app-protocol.ts serves dist/renderer/ there): the only page the window shows. */
  appUrl: string;
  /** Called when the page cannot be loaded (e.g. the renderer was not built). */
  onLoadError: (error: Error) => void;
}

export function createMainWindow({ preloadPath, appUrl, onLoadError }: MainWindowOptions): BrowserWindow {
  const window = new BrowserWindow({
    width: 1400,
    height: 900,
    minWidth: 900,
    minHeight: 600,
    show: false,
    title: 'D-iGPT Workbench',
    webPreferences: secureWebPreferences(preloadPath),
  });
  const contents = window.webContents;

  // A file dropped outside the page's drop zone, a link, or script would otherwise navigate the window away.
  const guard = (event: { preventDefault(): void }, url: string) => {
    if (!isNavigationAllowed(url, appUrl)) {
      event.preventDefault();
      console.warn(`window: blocked navigation to ${url}`);
    }
  };
  contents.on('will-navigate', (event) => guard(event, event.url));
  contents.on('will-redirect', (event) => guard(event, event.url));
  contents.on('will-frame-navigate', (event) => guard(event, event.url));
  contents.setWindowOpenHandler(windowOpenPolicy);
  contents.on('will-attach-webview', (event) => event.preventDefault());
  contents.on('render-process-gone', (_event, details) => {
    console.error(`window: renderer gone (${details.reason}, exit code ${details.exitCode})`);
  });

  window.once('ready-to-show', () => window.show());
  window.loadURL(appUrl).catch((e: unknown) => {
    window.show();
    onLoadError(e instanceof Error ? e : new Error(String(e)));
  });
  return window;
}
