// The window's security policy as pure functions: Content-Security-Policy, navigation, new windows, IPC senders; and
// the engine window's (main/engine-window.ts).
// main/window.ts and main/index.ts apply them to Electron; test/main/security.test.ts checks them without Electron.

/** The CSP sent with every response the window loads (the renderer's index.html carries the same as a <meta>). */
export const CONTENT_SECURITY_POLICY = [
  "default-src 'self'",
  "script-src 'self'",
  // Svelte's transitions and uPlot set inline styles.
  "style-src 'self' 'unsafe-inline'",
  // Thumbnails and the patch-order images arrive as PNG data URLs.
  "img-src 'self' data:",
  "connect-src 'self'",
  // no plugins, no <base> redirecting the page's relative URLs, no form posts, never framed
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

/** Response headers as Electron's webRequest hands them over (each value a list). */
export type ResponseHeaders = Record<string, string[]>;

/** `headers` with our CSP, replacing any Content-Security-Policy the response had (whatever its case). */
export function withCsp(headers: ResponseHeaders | undefined): ResponseHeaders {
  const out: ResponseHeaders = {};
  for (const [key, value] of Object.entries(headers ?? {})) {
    if (key.toLowerCase() !== 'content-security-policy') out[key] = value;
  }
  out['Content-Security-Policy'] = [CONTENT_SECURITY_POLICY];
  return out;
}

/** A URL without its query and fragment (the renderer may use a hash for its views), or null if it is no URL. */
function documentOf(url: string): string | null {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}${u.pathname}`;
  } catch {
    return null;
  }
}

/** Whether `url` is the app's own page `appUrl` (app://workbench/index.html), ignoring query and fragment. */
export function isAppUrl(url: string | undefined, appUrl: string): boolean {
  if (url === undefined) return false;
  const doc = documentOf(url);
  return doc !== null && doc === documentOf(appUrl);
}

/** `will-navigate`: the window may only (re)load the app's own page; a dropped file or a link goes nowhere. */
export function isNavigationAllowed(targetUrl: string, appUrl: string): boolean {
  return isAppUrl(targetUrl, appUrl);
}

/** `setWindowOpenHandler`: the app never opens a second window (window.open, target=_blank, middle-click). */
export function windowOpenPolicy(): { action: 'deny' } {
  return { action: 'deny' };
}

/** Who sent an IPC message: the sending webContents' id and the URL of the frame that sent it. */
export interface SenderInfo {
  senderId: number;
  /** `event.senderFrame?.url`; undefined when the frame is gone. */
  frameUrl: string | undefined;
}

/**
 * The check of every IPC message: it must come from the app's own window (its webContents id) and from the app's
 * own page in it (the frame's app:// URL), so neither another window nor a page the window was tricked into loading
 * nor an iframe can reach the workbench. `windowContentsId` returns null while there is no window.
 */
export function createSenderCheck(
  windowContentsId: () => number | null,
  appUrl: string,
): (sender: SenderInfo) => boolean {
  return (sender) => {
    const id = windowContentsId();
    return id !== null && sender.senderId === id && isAppUrl(sender.frameUrl, appUrl);
  };
}

/** The window's webPreferences: the page is an ordinary sandboxed web page whose only way out is the preload. */
export function secureWebPreferences(preloadPath: string) {
  return {
    preload: preloadPath,
    contextIsolation: true,
    sandbox: true,
    nodeIntegration: false,
    nodeIntegrationInSubFrames: false,
    nodeIntegrationInWorker: false,
    webSecurity: true,
    allowRunningInsecureContent: false,
    webviewTag: false,
    spellcheck: false,
  } as const;
}

/**
 * The engine window's webPreferences (main/engine-window.ts): a hidden page whose only code starts one dedicated
 * Worker, and only that worker has Node (the job engine needs its modules; Chromium gives it `navigator.gpu`).
 * nodeIntegrationInWorker requires an unsandboxed renderer; the page itself stays a context-isolated web page without
 * Node, and its preload (dist/main/engine-preload.cjs) exposes nothing: it hands the page one MessagePort from main.
 * Its own session (`partition`) serves only the engine page, so it shares no storage with the UI's.
 */
export function engineWebPreferences(preloadPath: string, partition: string) {
  return {
    preload: preloadPath,
    partition,
    contextIsolation: true,
    sandbox: false,
    nodeIntegration: false,
    nodeIntegrationInSubFrames: false,
    nodeIntegrationInWorker: true,
    webSecurity: true,
    allowRunningInsecureContent: false,
    webviewTag: false,
    spellcheck: false,
    // a hidden window is not throttled as a background page would be: the engine's timers and GPU work keep pace
    backgroundThrottling: false,
  } as const;
}

/** The engine page's CSP: its one script and the worker it starts, from its own origin; nothing else at all. */
export const ENGINE_CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "worker-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

/** Permissions the page may use: copying to the clipboard (a run's path, a config); no camera, location, etc. */
const ALLOWED_PERMISSIONS = new Set(['clipboard-sanitized-write']);

/** The session's permission request and check handlers answer with this. */
export function isPermissionAllowed(permission: string): boolean {
  return ALLOWED_PERMISSIONS.has(permission);
}
