// The app:// scheme that serves the built UI (dist/renderer/) to the window, without Electron: the page's URL, the
// privileges the scheme is registered with, and the request handler main/index.ts gives protocol.handle.
import { readFile, stat } from 'node:fs/promises';
import * as nodePath from 'node:path';
import { CONTENT_SECURITY_POLICY } from './security.js';
import { contentType } from '../app/ui-files.js';

export const APP_SCHEME = 'app';
/** A standard scheme needs a host; the window's origin is app://workbench. */
export const APP_HOST = 'workbench';
/** The only page the window shows. */
export const APP_URL = `${APP_SCHEME}://${APP_HOST}/index.html`;

/**
 * protocol.registerSchemesAsPrivileged's entry, registered before the app is ready: `standard` gives the page a real
 * origin (so `'self'` in the CSP and relative URLs work as on https), `secure` counts it as a secure context,
 * `supportFetchAPI` lets the page fetch its own files.
 */
export const APP_SCHEME_PRIVILEGES = {
  scheme: APP_SCHEME,
  privileges: { standard: true, secure: true, supportFetchAPI: true },
} as const;

/** Where a request goes: a file under the root, or a refusal with its status. */
export type AppTarget = { file: string } | { status: 400 | 403 | 404 };

/**
 * The file an app:// URL names under `root` (dist/renderer/), or why not: another host or scheme is 404, a path whose
 * percent-encoding is broken or holds a NUL is 400, and one that leaves `root` (`..` or an encoded `%2e%2e%2f` or `\`)
 * is 403 - resolved and then checked against the root's prefix, as `digpt serve` does for its static files.
 */
export function resolveAppTarget(url: string, root: string): AppTarget {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return { status: 400 };
  }
  if (u.protocol !== `${APP_SCHEME}:` || u.host !== APP_HOST) return { status: 404 };
  let path: string;
  try {
    path = decodeURIComponent(u.pathname);
  } catch {
    return { status: 400 };
  }
  if (path.includes('\0')) return { status: 400 };
  const base = nodePath.resolve(root);
  const file = nodePath.resolve(base, `.${path === '/' ? '/index.html' : path}`);
  if (!file.startsWith(base + nodePath.sep)) return { status: 403 };
  return { file };
}

const COMMON_HEADERS = {
  'Content-Security-Policy': CONTENT_SECURITY_POLICY,
  'X-Content-Type-Options': 'nosniff',
};

function refuse(status: number, text = ''): Response {
  return new Response(text, { status, headers: { ...COMMON_HEADERS, 'Content-Type': 'text/plain' } });
}

/**
 * protocol.handle('app', ...)'s handler: the built page's files with their type and the window's CSP; GET and HEAD
 * only. A missing build is answered with what to run, which the window then shows.
 */
export function createAppProtocolHandler(root: string): (request: Request) => Promise<Response> {
  return async (request) => {
    if (request.method !== 'GET' && request.method !== 'HEAD') return refuse(405);
    const target = resolveAppTarget(request.url, root);
    if ('status' in target) return refuse(target.status);
    const info = await stat(target.file).catch(() => null);
    if (!info?.isFile()) {
      const built = await stat(root).catch(() => null);
      if (!built) return refuse(503, `The interface is not built (${root}): run \`npm run build:renderer\`.`);
      return refuse(404);
    }
    const type = contentType(nodePath.extname(target.file));
    const headers = { ...COMMON_HEADERS, 'Content-Type': type };
    if (request.method === 'HEAD') return new Response(null, { status: 200, headers });
    return new Response(await readFile(target.file), { status: 200, headers });
  };
}
