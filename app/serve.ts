// `digpt serve`: the workbench UI and API over HTTP + WebSocket on loopback, behind a random token (as Jupyter does).
import { randomBytes, timingSafeEqual } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as nodePath from 'node:path';
import type { Duplex } from 'node:stream';
import { pipeline } from 'node:stream';
import { WebSocketServer, type RawData, type WebSocket } from 'ws';
import { RequestEnvelope } from './api/contract.js';
import { Workbench } from './workbench/index.js';
import { contentType } from './ui-files.js';

export interface ServeOptions {
  readonly host?: string;
  /** 0 picks a free port. */
  readonly port?: number;
  readonly workspace: string;
  /** The folder of run folders to list and launch into (`digpt serve --logdir`); default WORKSPACE/runs. */
  readonly runsDir?: string;
  /** A folder of runs trained elsewhere, or one such run (`digpt serve --external`): followed, the only place `runs.watch` may add from. */
  readonly external?: string;
  /** The built renderer (index.html and assets). */
  readonly staticDir?: string;
  /** Fixed token (tests); random otherwise. */
  readonly token?: string;
  /**
   * Every socket is pinged this often; one that has not answered the previous ping by the next is dropped
   * (a laptop that slept, a tab killed without a close frame). Default 30 s.
   */
  readonly pingIntervalMs?: number;
}

export interface Server {
  readonly url: string;
  readonly token: string;
  readonly port: number;
  readonly workbench: Workbench;
  close(): Promise<void>;
}

export const DEFAULT_STATIC_DIR = nodePath.resolve(import.meta.dirname, '..', 'dist', 'renderer');
/** The largest WebSocket message accepted; upload chunks (app/api/contract.ts) are sized to fit well under it. */
export const MAX_MESSAGE_BYTES = 1 << 20;
const DEFAULT_PING_MS = 30_000;

const CSP =
  "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'none'";
const COMMON_HEADERS = {
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
  'Content-Security-Policy': CSP,
};
const TOKEN_HINT = 'digpt serve: open the URL with the token that `digpt serve` printed (…/?token=…).';

// --- pure pieces: tokens, cookies, request targets, Host names ---

function same(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/**
 * The cookie holding the token is named per port: browsers share cookies across the ports of one host, so two
 * servers under one name would log each other out.
 */
export function cookieName(port: number): string {
  return `digpt_token_${port}`;
}

/** The values of every cookie called `name`; a value that is not valid percent-encoding is skipped. */
function cookieValues(header: string | undefined, name: string): string[] {
  const out: string[] = [];
  for (const part of (header ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0 || part.slice(0, eq).trim() !== name) continue;
    const v = safeDecode(part.slice(eq + 1).trim());
    if (v) out.push(v);
  }
  return out;
}

function safeDecode(s: string): string | null {
  try {
    return decodeURIComponent(s);
  } catch {
    return null;
  }
}

export interface Target {
  /** The decoded path, always starting with '/'. */
  readonly path: string;
  readonly query: URLSearchParams;
}

/**
 * A request's target, or null when it is not a path we can read: absolute-form (`http://…`, which browsers send only
 * to proxies), '*', or a path whose percent-encoding is broken (`/%zz`), or that decodes to a NUL.
 */
export function parseTarget(raw: string | undefined): Target | null {
  if (!raw?.startsWith('/')) return null;
  let url: URL;
  try {
    // prefixing an origin makes `//x` a path, not a scheme-relative address
    url = new URL(`http://h${raw}`);
  } catch {
    return null;
  }
  const path = safeDecode(url.pathname);
  if (path === null || path.includes('\0')) return null;
  return { path, query: url.searchParams };
}

const LOOPBACK_NAMES = ['127.0.0.1', 'localhost', '[::1]'];

function bracket(host: string): string {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/**
 * The Host headers this server answers: the name it was started for with its port (bare too on port 80). A
 * DNS-rebinding page reaches our address under its own domain, and that domain is what its Host header carries, so
 * it is refused. Loopback servers answer every loopback name; a wildcard bind (`0.0.0.0`, `::`) also answers the
 * machine's addresses and hostname (addresses cannot be rebound).
 */
export function allowedHosts(host: string, port: number): Set<string> {
  const names = new Set<string>([bracket(host.toLowerCase())]);
  if (isLoopback(host)) for (const n of LOOPBACK_NAMES) names.add(n);
  if (host === '0.0.0.0' || host === '::' || host === '') {
    for (const n of LOOPBACK_NAMES) names.add(n);
    for (const addrs of Object.values(os.networkInterfaces()))
      for (const a of addrs ?? []) if (!a.address.includes('%')) names.add(bracket(a.address.toLowerCase()));
    names.add(os.hostname().toLowerCase());
  }
  const out = new Set<string>();
  for (const n of names) {
    out.add(`${n}:${port}`);
    if (port === 80) out.add(n);
  }
  return out;
}

// --- guards ---

/** Ends a response with a status and a plain-text reason. */
function answer(res: http.ServerResponse, status: number, text = '', headers: http.OutgoingHttpHeaders = {}) {
  res.writeHead(status, {
    ...COMMON_HEADERS,
    ...(text ? { 'Content-Type': 'text/plain; charset=utf-8' } : {}),
    ...headers,
  });
  res.end(text ? `${text}\n` : undefined);
}

/** Answers over a raw socket (an upgrade refused before the handshake, a request the parser rejected), then ends it. */
function rawAnswer(socket: Duplex, status: number, text: string): void {
  const body = `${text}\n`;
  socket.end(
    `HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? ''}\r\nConnection: close\r\n` +
      `Content-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );
}

function explain(e: unknown): string {
  return e instanceof Error ? (e.stack ?? e.message) : String(e);
}

/**
 * Runs a request handler so that an exception in it costs only that request: a 500 if nothing was sent yet, else
 * the connection is cut. The server and every other connection go on.
 */
export function guarded(
  handler: http.RequestListener,
  log: (line: string) => void = (l) => process.stderr.write(l),
): http.RequestListener {
  return (req, res) => {
    try {
      handler(req, res);
    } catch (e) {
      log(`digpt serve: ${req.method} ${req.url}: ${explain(e)}\n`);
      if (res.headersSent) res.destroy();
      else answer(res, 500, 'digpt serve: internal error while answering this request (see the server log).');
    }
  };
}

/** A malformed request the HTTP parser rejected: 400 (431, 408) on that socket, which is then closed. */
function onClientError(err: NodeJS.ErrnoException, socket: Duplex): void {
  if (err.code === 'ECONNRESET' || !socket.writable) {
    socket.destroy();
    return;
  }
  const status =
    err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
  rawAnswer(socket, status, `digpt serve: malformed HTTP request (${err.code ?? err.message})`);
}

// --- the server ---

export async function serve(o: ServeOptions): Promise<Server> {
  const host = o.host ?? '127.0.0.1';
  const token = o.token ?? randomBytes(24).toString('hex');
  const staticDir = o.staticDir ?? DEFAULT_STATIC_DIR;
  const workbench = new Workbench({
    workspace: o.workspace,
    ...(o.runsDir !== undefined ? { runsDir: o.runsDir } : {}),
    restrictPaths: true,
    externalRoots: o.external !== undefined ? [o.external] : [],
  });
  if (o.external !== undefined) workbench.followExternal(o.external);
  // both are known once listening (port 0 picks one)
  let cookie = '';
  let hosts = new Set<string>();

  const hostOk = (req: http.IncomingMessage): boolean => hosts.has((req.headers.host ?? '').toLowerCase());
  // the names it does answer are not listed: a rebinding page can read this reply
  const hostRefusal = (req: http.IncomingMessage): string =>
    `digpt serve: this server does not answer to Host '${req.headers.host ?? ''}'; ` +
    `open the URL it printed (or start it with --host NAME).`;
  /** A query token decides when present (it is what the user just pasted); else any cookie of ours. */
  const authorised = (req: http.IncomingMessage, t: Target): boolean => {
    const q = t.query.get('token');
    const presented = q !== null ? [q] : cookieValues(req.headers.cookie, cookie);
    return presented.some((p) => same(p, token));
  };

  const onRequest = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    if (!hostOk(req)) return answer(res, 421, hostRefusal(req));
    const t = parseTarget(req.url);
    if (!t) return answer(res, 400, 'digpt serve: the request target is not a valid path.');
    if (!authorised(req, t)) return answer(res, 401, TOKEN_HINT);
    if (t.query.has('token')) {
      // the token moves into a cookie, and out of the address bar and history; `//x` must not become a
      // scheme-relative Location (another site)
      const location = encodeURI(`/${t.path.replace(/^\/+/, '')}`);
      return answer(res, 302, '', {
        'Set-Cookie': `${cookie}=${encodeURIComponent(token)}; HttpOnly; SameSite=Strict; Path=/`,
        Location: location,
      });
    }
    if (t.path === '/api') return answer(res, 426, 'digpt serve: /api is the WebSocket endpoint.');
    if (req.method !== 'GET' && req.method !== 'HEAD') return answer(res, 405);
    serveStatic(t.path, res);
  };

  const serveStatic = (path: string, res: http.ServerResponse): void => {
    const file = nodePath.resolve(staticDir, `.${path === '/' ? '/index.html' : path}`);
    if (!file.startsWith(staticDir + nodePath.sep)) return answer(res, 403);
    if (!fs.existsSync(staticDir))
      return answer(
        res,
        503,
        `digpt serve: the UI is not built (${staticDir}); run \`npm run build:renderer\`.`,
      );
    if (!fs.existsSync(file) || !fs.statSync(file).isFile()) return answer(res, 404);
    res.writeHead(200, {
      ...COMMON_HEADERS,
      'Content-Type': contentType(nodePath.extname(file)),
    });
    // a read error (file removed or unreadable) cuts this response only
    pipeline(fs.createReadStream(file), res, (err) => {
      if (err) res.destroy();
    });
  };

  const server = http.createServer(guarded(onRequest));
  server.on('clientError', onClientError);

  const wss = new WebSocketServer({ noServer: true, maxPayload: MAX_MESSAGE_BYTES });
  const clients = new Set<WebSocket>();
  /** Sockets that answered the last ping. */
  const alive = new WeakSet<WebSocket>();

  const onUpgrade = (req: http.IncomingMessage, socket: Duplex, head: Buffer): void => {
    if (!hostOk(req)) return rawAnswer(socket, 421, hostRefusal(req));
    const t = parseTarget(req.url);
    if (!t) return rawAnswer(socket, 400, 'digpt serve: the request target is not a valid path.');
    if (t.path !== '/api') return rawAnswer(socket, 404, 'digpt serve: the WebSocket endpoint is /api.');
    // a page on another origin must not drive the workbench, even with the cookie
    const origin = req.headers.origin;
    if (origin !== undefined && origin !== `http://${req.headers.host ?? ''}`)
      return rawAnswer(socket, 403, `digpt serve: WebSocket from another origin (${origin}) refused.`);
    // refused before the handshake: no socket is opened for a caller without the token
    if (!authorised(req, t)) return rawAnswer(socket, 401, TOKEN_HINT);
    wss.handleUpgrade(req, socket, head, attach);
  };

  server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    // Node hands an upgrading socket over without its error listener; a reset here must not end the process
    socket.on('error', () => socket.destroy());
    try {
      onUpgrade(req, socket, head);
    } catch (e) {
      process.stderr.write(`digpt serve: upgrade ${req.url}: ${explain(e)}\n`);
      if (socket.writable) rawAnswer(socket, 500, 'digpt serve: internal error.');
      else socket.destroy();
    }
  });

  function attach(ws: WebSocket): void {
    clients.add(ws);
    alive.add(ws);
    // A bad frame (unmasked, invalid UTF-8, over maxPayload) makes ws close this socket with 1002 / 1007 / 1009
    // and then emit 'error'; without a listener that error would end the process.
    ws.on('error', () => undefined);
    ws.on('pong', () => alive.add(ws));
    ws.on('close', () => clients.delete(ws));
    ws.on('message', (data) => onMessage(ws, data));
  }

  function onMessage(ws: WebSocket, data: RawData): void {
    let env: { id: number; name: string; payload: unknown };
    try {
      env = RequestEnvelope.parse(JSON.parse(data.toString()));
    } catch {
      ws.send(
        JSON.stringify({ type: 'response', id: -1, result: { ok: false, error: 'not a request envelope' } }),
      );
      return;
    }
    void workbench.handle(env.name, env.payload).then((result) => {
      if (ws.readyState === ws.OPEN) ws.send(JSON.stringify({ type: 'response', id: env.id, result }));
    });
  }

  const pinger = setInterval(() => {
    for (const ws of clients) {
      if (!alive.has(ws)) {
        ws.terminate();
        continue;
      }
      alive.delete(ws);
      ws.ping();
    }
  }, o.pingIntervalMs ?? DEFAULT_PING_MS);
  pinger.unref();

  const off = workbench.on((name, payload) => {
    const msg = JSON.stringify({ type: 'event', name, payload });
    for (const c of clients) if (c.readyState === c.OPEN) c.send(msg);
  });

  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(o.port ?? 0, host, () => resolve());
    });
  } catch (e) {
    clearInterval(pinger);
    await workbench.close();
    throw e;
  }
  const port = (server.address() as AddressInfo).port;
  cookie = cookieName(port);
  hosts = allowedHosts(host, port);
  return {
    url: `http://${bracket(host)}:${port}/?token=${token}`,
    token,
    port,
    workbench,
    close: async () => {
      clearInterval(pinger);
      off();
      for (const c of clients) c.terminate();
      wss.close();
      await new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      });
      await workbench.close();
    },
  };
}
